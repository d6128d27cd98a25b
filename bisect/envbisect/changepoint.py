"""Where a noisy metric's level changes: the Bayesian change-point search behind
``--samples auto``. Pure, no I/O: the driver (:mod:`envbisect.noisy`) feeds it samples
and runs the releases it asks for; ``tests/support/noise_sim.py`` feeds it seeded draws.

**Model.** Positions ``0 .. n-1`` are the releases of the search window in order (0 the
old endpoint, ``n-1`` the new one). A metric sample at a position before the change ``c``
is drawn from N(mu_old, sigma), from ``c`` on from N(mu_new, sigma); the means and sigma
are unknown (flat priors on the means and on log sigma) and every ``c`` in ``1 .. n-1`` is
a priori equally likely. With the means and sigma integrated out, the posterior of ``c``
given all samples is proportional to ``(n_old * n_new) ** -1/2 * SSE_c ** -(N-2)/2``
(``SSE_c``: the squared deviations of each side from its own mean, ``N``: all samples).
A known direction (``--direction``) multiplies in the posterior probability that the
new level lies on the worse side (normal approximation). Excluded positions (ambiguous,
or a sample that measured nothing) drop out: the change is then placed between two
active positions, and what lies between is untestable.

**Sampling.** Every sample goes where it is expected to tell the most: the position whose
next sample most reduces the entropy of the posterior of ``c`` (one-step lookahead: the
predictive distribution of that sample, a mixture over the probable changes, pooled into
one normal for the old side and one for the new once more than :data:`_EXACT` changes
are probable, each integrated at five points; about 0.04 s per sample for 16 releases,
0.4 s for 300). Endpoints start with
:data:`MIN_END_SAMPLES` each and are sampled again whenever the levels need it; a
release that is plainly old or new costs a sample or two, one near the change as many as
it takes.

**Stopping** (:meth:`ChangePoint.step`): the most probable change has posterior
probability at least the confidence, both releases beside it look like their own side
(a t-test of each against the rest of its side at :data:`UNLIKE_ALPHA`; one unlike it is
**ambiguous**, excluded, and the search goes on), and the old and new sides, pooled, are
separated by :func:`envbisect.sampling.separate` at the confidence, and each release beside
the change has at least :data:`MIN_NEIGHBOUR_SAMPLES` (a short one is sampled next). A
candidate gets at
most ``max_samples`` (the endpoints only the budget); when nothing is worth sampling any
more within the caps and the budget (:func:`budget`), a candidate at its cap whose side
is still uncertain is ambiguous, and without one the search is exhausted: the driver says
whether the endpoints could not be told apart or the answer is inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from statistics import NormalDist, fmean

from envbisect.sampling import Direction, SamplingPlan, Separation, separate, t_quantile

#: Samples each endpoint gets before the first look; from the third sample on (the
#: least that estimates two means and one sd) every one goes where it tells the most,
#: the endpoints included. One each costs the least on simulated trials (bench_noise).
MIN_END_SAMPLES = 1
#: The two releases beside the change are never judged on fewer samples: one sample each
#: that happened to sit in tight clusters made sigma look tiny and the posterior pass 0.99
#: on a wrong change after 6 runs (bench_noise, d = 2, seed 50); the second sample costs
#: 0.0-0.2 runs on average at d = 2-4 (d = 2: 27.4 runs and 96% found on seeds 50-149,
#: 27.2 and 95% without).
MIN_NEIGHBOUR_SAMPLES = 2
#: The predictive distribution of a next sample is integrated at these points
#: (Gauss-Hermite, five nodes, for a standard normal).
_NODES = tuple((x * math.sqrt(2), w / math.sqrt(math.pi)) for x, w in (
    (-2.0201828704560856, 0.019953242059045913), (-0.9585724646138185, 0.3936193231522412),
    (0.0, 0.9453087204829419), (0.9585724646138185, 0.3936193231522412), (2.0201828704560856, 0.019953242059045913)))
#: The level of the test that calls a release beside the change unlike its own side
#: (ambiguous): strict, since it runs at every look (at 0.001, a release whose first ten
#: samples happened to average 2.9 sd from its side's mean was called ambiguous); a mean
#: halfway between two levels 12 sd apart fails it after a few samples.
UNLIKE_ALPHA = 1e-4
#: Hypotheses below this posterior probability are left out of the lookahead, and so
#: are all but the most probable ``_MIXTURE``.
_NEGLIGIBLE = 1e-6
_MIXTURE = 48
#: Up to this many probable changes the lookahead integrates each on its own (a window
#: of 16 releases always); beyond, pooled per side (:func:`_expectation`).
_EXACT = 16
_Z = NormalDist()


def budget(n: int, plan: SamplingPlan) -> int:
    """The most samples a search of ``n`` positions takes: ``max_samples`` for each probe a
    plain bisection would make (``ceil(log2(n - 1)) + 2``)."""
    return plan.max_samples * (math.ceil(math.log2(max(n - 1, 1))) + 2)


class State(str, Enum):
    SAMPLE = "sample"  # sample ``picks`` once more each
    FOUND = "found"  # the change lies between ``last_old`` and ``first_new``
    EXHAUSTED = "exhausted"  # the budget is spent (or nothing is left to sample)


@dataclass(frozen=True)
class Step:
    state: State
    picks: tuple[int, ...] = ()
    last_old: int | None = None
    first_new: int | None = None
    probability: float = 0.0
    sides: Separation | None = None


@dataclass
class _Stats:
    """n, sum and sum of squares of some samples."""

    n: int = 0
    s: float = 0.0
    ss: float = 0.0

    def plus(self, other: _Stats, sign: int = 1) -> _Stats:
        return _Stats(self.n + sign * other.n, self.s + sign * other.s, self.ss + sign * other.ss)

    @property
    def mean(self) -> float:
        return self.s / self.n

    @property
    def sse(self) -> float:
        return max(self.ss - self.s * self.s / self.n, 0.0) if self.n else 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> _Stats:
        return cls(len(values), math.fsum(values), math.fsum(v * v for v in values))


@dataclass
class ChangePoint:
    """The posterior of the change among ``n`` positions, and what to sample next
    (``find_fix``: the new side is the good one)."""

    n: int
    plan: SamplingPlan
    find_fix: bool = False
    samples: list[list[float]] = field(default_factory=list)
    #: Excluded positions and why (ambiguous, or no measurement).
    excluded: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"a change needs two positions, got n={self.n}")
        self.samples = [list(s) for s in self.samples] or [[] for _ in range(self.n)]

    # -- what is known ------------------------------------------------------------

    def add(self, position: int, value: float) -> None:
        self.samples[position].append(float(value))

    def exclude(self, position: int, reason: str) -> None:
        if position in (0, self.n - 1):
            raise ValueError("an endpoint cannot be excluded: it fixes the old or the new level")
        self.excluded[position] = reason

    @property
    def sign(self) -> int:
        """+1 when the new level must lie above the old one, -1 below, 0 either way."""
        if self.plan.direction is Direction.EITHER:
            return 0
        higher_is_worse = self.plan.direction is Direction.HIGHER_IS_WORSE
        return 1 if higher_is_worse != self.find_fix else -1

    @property
    def active(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.excluded]

    @property
    def runs(self) -> int:
        return sum(len(s) for s in self.samples)

    def posterior(self) -> dict[int, float]:
        """P(the first new active position is ``p``), for each active ``p`` after the first."""
        return self._posterior(self._stats())

    def p_new(self) -> dict[int, float]:
        """P(position ``p`` lies on the new side), for each active ``p``."""
        post = self.posterior()
        acc, out = 0.0, {}
        for p in self.active:
            acc += post.get(p, 0.0)
            out[p] = min(acc, 1.0)
        return out

    # -- the posterior ------------------------------------------------------------

    def _stats(self) -> list[tuple[int, _Stats]]:
        """Each active position's sums, of the samples in :meth:`_frame`'s units: less the
        first sample (a metric of 1000 ± 0.001 keeps its digits in the sums of squares) and
        divided by a power of two that brings them within ±1 (a relative difference of
        1e-16 ± 1e-17 is judged as 1 ± 0.1 is, and one of 1e200 squares without overflow)."""
        shift, scale = self._frame()
        return [(p, _Stats.of([(v - shift) / scale for v in self.samples[p]])) for p in self.active]

    def _frame(self) -> tuple[float, float]:
        """(shift, scale): :meth:`_stats` takes ``(v - shift) / scale`` of every sample ``v``;
        the shift is the first sample taken, the scale the least power of two above every
        sample's distance from it (exact to divide by; 1 when all are equal). The posterior of
        the change does not depend on either (flat priors on the means and on log sigma), so
        no constant of the search assumes the metric's units."""
        shift = next((v[0] for v in self.samples if v), 0.0)
        spread = max((abs(v - shift) for vs in self.samples for v in vs), default=0.0)
        return shift, math.ldexp(1.0, math.frexp(spread)[1]) if 0 < spread < math.inf else 1.0

    def _log_likelihoods(self, stats: list[tuple[int, _Stats]], add: tuple[int, float] | None = None
                         ) -> dict[int, float]:
        """Log marginal likelihood of each change (see the module docstring), with one more
        sample ``add = (j, y)`` at the ``j``-th active position if given; plain floats and
        prefix sums, since the lookahead calls this some hundred times per sample."""
        ns = [st.n for _, st in stats]
        sums = [st.s for _, st in stats]
        squares = [st.ss for _, st in stats]
        if add is not None:
            j, y = add
            ns[j], sums[j], squares[j] = ns[j] + 1, sums[j] + y, squares[j] + y * y
        tn, ts, tss = sum(ns), math.fsum(sums), math.fsum(squares)
        if tn < 3:
            return {p: 0.0 for p, _ in stats[1:]}
        floor = 1e-12 * (max(tss - ts * ts / tn, 0.0) / tn + 1e-300)
        half = (tn - 2) / 2
        out: dict[int, float] = {}
        on = os_ = oss = 0.0
        for k in range(1, len(stats)):
            on, os_, oss = on + ns[k - 1], os_ + sums[k - 1], oss + squares[k - 1]
            nn, nsum, nss = tn - on, ts - os_, tss - oss
            if not on or not nn:
                out[stats[k][0]] = -math.inf
                continue
            sse = max(max(oss - os_ * os_ / on, 0.0) + max(nss - nsum * nsum / nn, 0.0), floor)
            ll = -0.5 * math.log(on * nn) - half * math.log(sse)
            if self.sign:
                se = math.sqrt(sse / (tn - 2) * (1 / on + 1 / nn))
                ll += math.log(max(_Z.cdf(self.sign * (nsum / nn - os_ / on) / se), 1e-300))
            out[stats[k][0]] = ll
        return out

    def _posterior(self, stats: list[tuple[int, _Stats]], add: tuple[int, float] | None = None) -> dict[int, float]:
        logs = self._log_likelihoods(stats, add)
        top = max(logs.values())
        if top == -math.inf:
            return {p: 1 / len(logs) for p in logs}
        weights = {p: math.exp(v - top) for p, v in logs.items()}
        norm = math.fsum(weights.values())
        return {p: w / norm for p, w in weights.items()}

    # -- the next samples -----------------------------------------------------------

    def gains(self, candidates: Sequence[int] | None = None) -> list[tuple[float, int]]:
        """(expected entropy reduction, position) for each position that may be sampled
        again (active; a candidate under ``max_samples``), best first; ties go to the lower
        position. The predictive distribution of the next sample is the posterior mixture,
        over the most probable changes (:data:`_MIXTURE` of them), of that position's
        side's Student-t predictive, approximated by a normal (:func:`_expectation`)."""
        stats = self._stats()
        post = self._posterior(stats)
        h0 = _entropy(post.values())
        where = {p: j for j, (p, _) in enumerate(stats)}
        mixture = self._mixture(stats, post)
        out = []
        for p in candidates if candidates is not None else self._candidates():
            if len(self.samples[p]) >= self.plan.max_samples and 0 < p < self.n - 1:
                continue  # a candidate's cap; the endpoints, which set the levels, have only the budget
            sides: tuple[list, list] = ([], [])
            for weight, first_new, (old, new, sd) in mixture:
                st = new if p >= first_new else old
                sides[p >= first_new].append((weight, st.mean, sd * math.sqrt(1 + 1 / st.n)))
            expected = _expectation(sides, lambda y: _entropy(self._posterior(stats, (where[p], y)).values()))
            out.append((h0 - expected, p))
        out.sort(key=lambda g: (-g[0], g[1]))
        return out

    def _mixture(self, stats, post) -> list[tuple[float, int, tuple[_Stats, _Stats, float]]]:
        """(weight, first new position, (old side, new side, pooled sd)) of the most
        probable changes, weights renormalised."""
        total = _Stats()
        for _, st in stats:
            total = total.plus(st)
        top = sorted(post, key=lambda p: -post[p])[:_MIXTURE]
        out = []
        old = _Stats()
        for k in range(1, len(stats)):
            old = old.plus(stats[k - 1][1])
            first_new = stats[k][0]
            if first_new not in top or post[first_new] < _NEGLIGIBLE:
                continue
            new = total.plus(old, -1)
            sd = max(math.sqrt((old.sse + new.sse) / max(total.n - 2, 1)), 1e-12)
            out.append((post[first_new], first_new, (old, new, sd)))
        norm = math.fsum(w for w, _, _ in out)
        return [(w / norm, f, sides) for w, f, sides in out]

    def _candidates(self) -> list[int]:
        """The positions worth a lookahead: all of them in a short window; in a long one
        the endpoints and the positions at 63 evenly spaced quantiles of the posterior."""
        active = self.active
        if len(active) <= 64:
            return active
        p_new = self.p_new()
        picked = {active[0], active[-1]}
        for q in range(1, 64):
            picked.add(next((p for p in active if p_new[p] >= q / 64), active[-1]))
        return sorted(picked)

    # -- the decision --------------------------------------------------------------

    def step(self, k: int = 1) -> Step:
        """What to do now: sample up to ``k`` positions once more each (the endpoints'
        first samples before anything else), or stop (found, or exhausted). Excludes the
        ambiguous releases it meets on the way (see the module docstring)."""
        ends = [p for p in (0, self.n - 1) if len(self.samples[p]) < MIN_END_SAMPLES]
        if ends:
            return Step(State.SAMPLE, tuple(ends))
        while True:
            if (found := self._found(k)) is not None:
                return found
            picks = tuple(p for _, p in self.gains()[:max(1, k)]) if self.runs < budget(self.n, self.plan) else ()
            if picks:
                return Step(State.SAMPLE, picks)
            # Nothing more to learn within the caps and the budget: a candidate at its cap
            # whose side is still uncertain is ambiguous; without one, the search is spent.
            p_new = self.p_new()
            capped = [p for p, q in p_new.items() if 0 < p < self.n - 1 and self.plan.alpha < q < 1 - self.plan.alpha
                      and len(self.samples[p]) >= self.plan.max_samples]
            if not capped:
                return Step(State.EXHAUSTED)
            for p in capped:
                self.exclude(p, self._ambiguous(p, f"between old and new (P(new) = {p_new[p]:.3f})"))

    def _found(self, k: int = 1) -> Step | None:
        """FOUND when the most probable change passes the confidence, the releases beside
        it look like their sides (one that does not is excluded as ambiguous, and the
        next most probable change is looked at), both have :data:`MIN_NEIGHBOUR_SAMPLES`,
        and the sides are separated. A neighbour short of samples is sampled next (within
        the budget): the posterior, already sure, prices every sample at nearly nothing,
        and its lookahead would pick by rounding."""
        while True:
            post = self.posterior()
            first_new = max(post, key=lambda p: (post[p], -p))
            if post[first_new] < self.plan.confidence:
                return None
            active = self.active
            last_old = active[active.index(first_new) - 1]
            unlike = [p for p in (last_old, first_new) if 0 < p < self.n - 1 and self._unlike_its_side(p, first_new)]
            if not unlike:
                sides = self.sides(first_new)
                short = self._short(last_old, first_new)
                if sides.separated and not short:
                    return Step(State.FOUND, (), last_old, first_new, post[first_new], sides)
                return Step(State.SAMPLE, short[:max(1, k)]) if short and self.runs < budget(self.n, self.plan) \
                    else None
            for p in unlike:
                self.exclude(p, self._ambiguous(p, "unlike both sides"))

    def _short(self, last_old: int, first_new: int) -> tuple[int, ...]:
        """The releases beside the change with fewer than :data:`MIN_NEIGHBOUR_SAMPLES`."""
        return tuple(p for p in (last_old, first_new) if len(self.samples[p]) < MIN_NEIGHBOUR_SAMPLES)

    def sides(self, first_new: int) -> Separation:
        """The pooled old side against the pooled new side (:func:`separate`: the good one
        first, so that ``--direction`` reads as it does for the endpoints)."""
        return self._separate([v for p in self.active if p < first_new for v in self.samples[p]],
                              [v for p in self.active if p >= first_new for v in self.samples[p]])

    def endpoints(self) -> Separation:
        """The old endpoint's samples against the new one's (as :meth:`sides`)."""
        return self._separate(self.samples[0], self.samples[-1])

    def _separate(self, old: list[float], new: list[float]) -> Separation:
        good, bad = (new, old) if self.find_fix else (old, new)
        return separate(good, bad, self.plan)

    def _unlike_its_side(self, p: int, first_new: int) -> bool:
        """Whether ``p``'s samples differ from the rest of its side at
        :data:`UNLIKE_ALPHA` (a two-sided t-test; the sd pooled within ``p``, the rest of
        its side and the other side, at least 3 degrees of freedom)."""
        stats = dict(self._stats())
        own = stats.pop(p)
        on_new = p >= first_new
        rest, other = _Stats(), _Stats()
        for q, st in stats.items():
            if (q >= first_new) == on_new:
                rest = rest.plus(st)
            else:
                other = other.plus(st)
        df = own.n + rest.n + other.n - 3
        if own.n == 0 or rest.n == 0 or other.n == 0 or df < 3:
            return False
        sd = math.sqrt((own.sse + rest.sse + other.sse) / df)
        if sd == 0:
            return own.mean != rest.mean
        t = abs(own.mean - rest.mean) / (sd * math.sqrt(1 / own.n + 1 / rest.n))
        return t > t_quantile(1 - UNLIKE_ALPHA / 2, df)

    def _ambiguous(self, p: int, why: str) -> str:
        n = len(self.samples[p])
        return f"ambiguous after {n} sample{'s' if n != 1 else ''}: {why} (mean {fmean(self.samples[p]):.4g})"


def _entropy(ps) -> float:
    return -math.fsum(p * math.log(p) for p in ps if p > 0)


def _expectation(sides: tuple[list, list], f) -> float:
    """E[f(y)] for y from a normal mixture whose components (weight, mean, sd) come in two
    groups, the changes that put the position on the old side and those that put it on
    the new. Up to :data:`_EXACT` components each is integrated by five-point
    Gauss-Hermite; beyond, each group is moment-matched to one normal first (ten
    evaluations of ``f`` in all, for long windows; on simulated trials the exact mixture
    found a few percent more boundaries at the same cost)."""
    parts = [[c] for part in sides for c in part] if sum(map(len, sides)) <= _EXACT else sides
    total = 0.0
    for part in parts:
        w = math.fsum(c[0] for c in part)
        if w <= 0:
            continue
        m = math.fsum(c[0] * c[1] for c in part) / w
        sd = math.sqrt(math.fsum(c[0] * (c[2] ** 2 + (c[1] - m) ** 2) for c in part) / w)
        total += w * math.fsum(gw * f(m + sd * x) for x, gw in _NODES)
    return total
