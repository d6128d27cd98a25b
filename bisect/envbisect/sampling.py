"""Statistics for noisy metrics (``--metric NAME --samples auto``): pure, no I/O.

The plan a run samples under (:class:`SamplingPlan`: metric, confidence, per-release cap,
direction), the pooled two-sample t-test that says whether two groups of samples are
separated (:func:`separate`, one-sided when a :class:`Direction` says which way is worse,
two-sided otherwise) and the line a run stops with when the endpoints cannot be told
apart. Where the level changes, and which release to sample next, is
:mod:`envbisect.changepoint`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist, fmean, stdev

from envbisect.errors import ConfigError

#: The smallest ``--max-samples``: fewer would leave a release near the change no room
#: to be judged.
MIN_MAX_SAMPLES = 3
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MAX_SAMPLES = 10

_Z = NormalDist()


class Direction(str, Enum):
    """Which way the metric gets worse (``--direction``); EITHER: whichever way the bad
    endpoint lies (a divergence, where any change is the regression)."""

    EITHER = "either"
    HIGHER_IS_WORSE = "higher-is-worse"
    LOWER_IS_WORSE = "lower-is-worse"


@dataclass(frozen=True)
class SamplingPlan:
    """How noisy samples are judged: judging settings, never part of a probe's key (the
    raw samples are stored and reusable under any plan)."""

    metric: str
    confidence: float = DEFAULT_CONFIDENCE
    max_samples: int = DEFAULT_MAX_SAMPLES
    direction: Direction = Direction.EITHER

    def __post_init__(self) -> None:
        if not self.metric:
            raise ConfigError("--samples auto needs --metric NAME: the metric of $ENVBISECT_RESULT to sample")
        if not 0.5 < self.confidence < 1:
            raise ConfigError(f"--confidence {self.confidence:g} is not between 0.5 and 1 (exclusive); "
                              "pass e.g. --confidence 0.99")
        if isinstance(self.max_samples, bool) or not isinstance(self.max_samples, int) \
                or self.max_samples < MIN_MAX_SAMPLES:
            raise ConfigError(f"--max-samples {self.max_samples} is below {MIN_MAX_SAMPLES}, too few to judge a "
                              "release near the change; pass e.g. --max-samples 10")
        object.__setattr__(self, "direction", Direction(self.direction))

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def as_dict(self) -> dict:
        return {"metric": self.metric, "confidence": self.confidence, "max_samples": self.max_samples,
                "direction": self.direction.value}


@dataclass(frozen=True)
class Summary:
    """n, mean and sample standard deviation of some samples."""

    n: int
    mean: float
    sd: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(len(values), fmean(values) if values else math.nan,
                   stdev(values) if len(values) > 1 else 0.0)

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.sd:.2g} (n={self.n})"

    def as_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "sd": self.sd}


@dataclass(frozen=True)
class Separation:
    """The endpoints' test: their summaries, the pooled sd, the t statistic (signed so
    that positive means "bad is worse" under the plan's direction) and its critical value."""

    good: Summary
    bad: Summary
    sigma: float
    t: float
    critical: float
    separated: bool
    confidence: float

    @property
    def reason(self) -> str:
        verdict = "separated" if self.separated else "not separated"
        return (f"good {self.good}, bad {self.bad}: {verdict} at {self.confidence:.0%} "
                f"(t={self.t:.2f}, needs > {self.critical:.2f})")

    def as_dict(self) -> dict:
        return {"good": self.good.as_dict(), "bad": self.bad.as_dict(), "sigma": self.sigma, "t": self.t,
                "critical": self.critical, "separated": self.separated, "confidence": self.confidence}


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: the normal quantile corrected by the Cornish-Fisher series of
    Abramowitz & Stegun 26.7.5 (within 0.5% from 3 degrees of freedom, where it is used;
    envbisect does not depend on scipy)."""
    x = _Z.inv_cdf(p)
    if df <= 0:
        return math.inf
    g = ((x ** 3 + x) / 4,
         (5 * x ** 5 + 16 * x ** 3 + 3 * x) / 96,
         (3 * x ** 7 + 19 * x ** 5 + 17 * x ** 3 - 15 * x) / 384,
         (79 * x ** 9 + 776 * x ** 7 + 1482 * x ** 5 - 1920 * x ** 3 - 945 * x) / 92160)
    return x + sum(gi / df ** (i + 1) for i, gi in enumerate(g))


def _worse_sign(plan: SamplingPlan, good: float, bad: float) -> float:
    """+1 when the bad endpoint's mean should lie above the good one's, -1 below."""
    if plan.direction is Direction.HIGHER_IS_WORSE:
        return 1.0
    if plan.direction is Direction.LOWER_IS_WORSE:
        return -1.0
    return 1.0 if bad >= good else -1.0


def separate(good: Sequence[float], bad: Sequence[float], plan: SamplingPlan) -> Separation:
    """Whether the endpoints' means differ at the plan's confidence (pooled t-test)."""
    g, b = Summary.of(good), Summary.of(bad)
    df = g.n + b.n - 2
    # The pooled sd, in units of the larger sd: a metric of 1e200 squares without overflow.
    unit = max(g.sd, b.sd)
    sigma = unit * math.sqrt(((g.n - 1) * (g.sd / unit) ** 2 + (b.n - 1) * (b.sd / unit) ** 2) / df) \
        if df > 0 and unit > 0 else 0.0
    two_sided = plan.direction is Direction.EITHER
    critical = t_quantile(1 - plan.alpha / 2 if two_sided else plan.confidence, df)
    diff = (b.mean - g.mean) * _worse_sign(plan, g.mean, b.mean)
    se = sigma * math.sqrt(1 / max(g.n, 1) + 1 / max(b.n, 1))
    if se > 0:
        t = diff / se
    else:  # constant endpoints: separated exactly when they differ in the worse direction
        t = math.copysign(math.inf, diff) if diff else 0.0
    return Separation(g, b, sigma, t, critical, g.n >= 2 and b.n >= 2 and t > critical, plan.confidence)


def not_separated_message(sep: Separation, plan: SamplingPlan, good: str, bad: str) -> str:
    """The one line a run stops with when the endpoints stay together."""
    what = f"the endpoints {good} (good) and {bad} (bad) cannot be told apart by {plan.metric}"
    if plan.direction is not Direction.EITHER and sep.t < 0:
        return (f"{what}: the bad release's {plan.metric} is better, not worse ({sep.good.mean:.4g} -> "
                f"{sep.bad.mean:.4g}, --direction {plan.direction.value}); fix --direction or the endpoints")
    return (f"{what} after {sep.good.n} and {sep.bad.n} samples ({sep.reason}); raise --max-samples, lower --confidence, "
            "or check that the metric moves between them")
