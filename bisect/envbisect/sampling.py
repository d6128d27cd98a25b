"""Statistical verdicts for noisy metrics (``--metric NAME --samples auto``): pure, no I/O.

A noisy metric (a GPU reduction, a TF32 matmul, a step time) gives another number on
every run, so one sample per release picks the wrong boundary, and a fixed number of
runs per release (``--retries``) spends them on releases that are plainly good or bad.
This module decides, from the numbers alone, how many samples are enough:

1. **Endpoints.** The known good and known bad releases are sampled in lock-step,
   ``MIN_END_SAMPLES`` each and then one more each per round, until a pooled two-sample
   t-test separates their means at the chosen confidence (one-sided when a
   :class:`Direction` says which way is worse, two-sided otherwise), or until
   ``max_samples`` each: then they cannot be separated and the run stops with that
   reason (:func:`separate`, :func:`endpoint_rounds`).
2. **Candidates.** Each probed release is sampled one run at a time and classified by a
   Wald sequential probability ratio test (SPRT) of "its samples come from the good
   endpoint's distribution" against "from the bad one's" (each the Student-t predictive
   distribution of one more sample, from the endpoint's mean and the pooled standard
   deviation, so that the endpoints' own uncertainty is not ignored): with ``alpha = beta = 1 - confidence`` it stops at
   ``log((1 - beta) / alpha)`` (bad) or ``log(beta / (1 - alpha))`` (good). A sequence
   that stops is accepted only when the sample mean is also consistent with the
   endpoint it picked (a two-sided z-test at the same confidence); a candidate whose
   mean is unlike *both* endpoints is ambiguous at once, and one still undecided after
   ``max_samples`` is ambiguous too (:func:`classify`). Ambiguous is never a
   boundary: the run records it untestable with that reason.

Wald's SPRT needs, on average, the fewest samples of any test with the same error
rates, which is why the plainly good and plainly bad releases cost one to three runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist, fmean, stdev

from envbisect.errors import ConfigError

#: Each endpoint's first round: enough samples for a standard deviation worth pooling.
MIN_END_SAMPLES = 3
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MAX_SAMPLES = 10

_Z = NormalDist()


class Direction(str, Enum):
    """Which way the metric gets worse (``--direction``); EITHER: whichever way the bad
    endpoint lies (a divergence, where any change is the regression)."""

    EITHER = "either"
    HIGHER_IS_WORSE = "higher-is-worse"
    LOWER_IS_WORSE = "lower-is-worse"


class Decision(str, Enum):
    """A candidate's classification from its samples so far; MORE: take another sample."""

    GOOD = "good"
    BAD = "bad"
    AMBIGUOUS = "ambiguous"
    MORE = "more"


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
                or self.max_samples < MIN_END_SAMPLES:
            raise ConfigError(f"--max-samples {self.max_samples} is below {MIN_END_SAMPLES}, the endpoints' first "
                              "round; pass e.g. --max-samples 10")
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


@dataclass(frozen=True)
class Classification:
    """A candidate's decision with the numbers behind it (``llr``: log likelihood ratio,
    bad over good) and a reason a report can print."""

    decision: Decision
    n: int
    mean: float
    llr: float
    reason: str


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
    pooled = ((g.n - 1) * g.sd ** 2 + (b.n - 1) * b.sd ** 2) / df if df > 0 else 0.0
    sigma = math.sqrt(pooled)
    two_sided = plan.direction is Direction.EITHER
    critical = t_quantile(1 - plan.alpha / 2 if two_sided else plan.confidence, df)
    diff = (b.mean - g.mean) * _worse_sign(plan, g.mean, b.mean)
    se = sigma * math.sqrt(1 / max(g.n, 1) + 1 / max(b.n, 1))
    if se > 0:
        t = diff / se
    else:  # constant endpoints: separated exactly when they differ in the worse direction
        t = math.copysign(math.inf, diff) if diff else 0.0
    return Separation(g, b, sigma, t, critical, g.n >= 2 and b.n >= 2 and t > critical, plan.confidence)


def endpoint_rounds(plan: SamplingPlan) -> Iterator[int]:
    """How many samples each endpoint has in each round: 3, 4, ... max_samples."""
    yield from range(MIN_END_SAMPLES, plan.max_samples + 1)


def not_separated_message(sep: Separation, plan: SamplingPlan, good: str, bad: str) -> str:
    """The one line a run stops with when the endpoints stay together."""
    what = f"the endpoints {good} (good) and {bad} (bad) cannot be told apart by {plan.metric}"
    if plan.direction is not Direction.EITHER and sep.t < 0:
        return (f"{what}: the bad release's {plan.metric} is better, not worse ({sep.good.mean:.4g} -> "
                f"{sep.bad.mean:.4g}, --direction {plan.direction.value}); fix --direction or the endpoints")
    return (f"{what} after {sep.good.n} samples each ({sep.reason}); raise --max-samples, lower --confidence, "
            "or check that the metric moves between them")


def classify(values: Sequence[float], ends: Separation, plan: SamplingPlan) -> Classification:
    """Classify a candidate from its samples against the separated endpoints (see the
    module docstring: SPRT with a consistency check, ambiguous at the cap)."""
    n = len(values)
    mean = fmean(values) if values else math.nan
    mu_g, mu_b = ends.good.mean, ends.bad.mean
    # A floor on sigma keeps constant endpoints meaningful: equal values are certain matches.
    sigma = max(ends.sigma, abs(mu_b - mu_g) * 1e-9, 1e-300)
    # The likelihoods are the predictive distributions of one new sample from each endpoint:
    # Student's t with the pooled degrees of freedom and scale sigma * sqrt(1 + 1/n_end).
    # The endpoints' means and sd are estimates from a few samples; a test that took them
    # as exact normals would be overconfident (one stray sample would decide).
    nu = max(ends.good.n + ends.bad.n - 2, 1)
    spread = sigma * math.sqrt(1 + 1 / min(ends.good.n, ends.bad.n))
    llr = sum((nu + 1) / 2 * (math.log1p(((x - mu_g) / spread) ** 2 / nu)
                              - math.log1p(((x - mu_b) / spread) ** 2 / nu)) for x in values)
    if n == 0:
        return Classification(Decision.MORE, 0, mean, 0.0, "no samples yet")
    bound = math.log((1 - plan.alpha) / plan.alpha)
    # The consistency test allows for the endpoints' own uncertainty (their means are
    # estimates too) and for the pooled sd being estimated (Student's t, pooled df).
    df = ends.good.n + ends.bad.n - 2
    z = t_quantile(1 - plan.alpha / 2, df)
    like_good = abs(mean - mu_g) / (sigma * math.sqrt(1 / n + 1 / ends.good.n)) <= z
    like_bad = abs(mean - mu_b) / (sigma * math.sqrt(1 / n + 1 / ends.bad.n)) <= z
    where = f"mean {mean:.4g} over {n} sample{'s' if n != 1 else ''}; good {mu_g:.4g}, bad {mu_b:.4g}"
    if not like_good and not like_bad:
        return Classification(Decision.AMBIGUOUS, n, mean, llr,
                              f"ambiguous after {n} samples: unlike both good and bad ({where})")
    if llr >= bound and like_bad:
        return Classification(Decision.BAD, n, mean, llr, f"{plan.metric} like the bad release at "
                              f"{plan.confidence:.0%} ({where})")
    if llr <= -bound and like_good:
        return Classification(Decision.GOOD, n, mean, llr, f"{plan.metric} like the good release at "
                              f"{plan.confidence:.0%} ({where})")
    if n >= plan.max_samples:
        return Classification(Decision.AMBIGUOUS, n, mean, llr,
                              f"ambiguous after {n} samples: between good and bad ({where})")
    return Classification(Decision.MORE, n, mean, llr, f"undecided ({where})")
