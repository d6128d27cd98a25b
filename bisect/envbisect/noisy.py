"""Sampled verdicts in a run (``--metric NAME --samples auto``): the change-point search of
:mod:`envbisect.changepoint` driven through a run's probes and stored rows.

Every sample is one recipe run, stored as one probe row (``attempt`` is the sample's
index, and the recipe sees it as ``$ENVBISECT_SAMPLE``), exactly as ``--retries``
attempts are; only *how many* runs a probe gets is decided here, by a
:class:`~envbisect.session.Decider` with a quota per release. :meth:`Sampler.search`
asks the change-point search which releases to sample next and raises their quotas by
one; the search sees a release's samples in the order they were taken, and each only
once it asked for it, so its choices depend on the values alone: a run killed at any
point resumes along the same path with every sample it took, and a later run with other
sampling settings reuses the stored samples in order (the settings judge, they are not
in the probe key).

A row's own judgement is provisional ("sample 2: loss 0.731 (judged at the end)"): the verdict of each
sampled release (good, bad, or untestable when ambiguous) comes from the posterior when
the search ends, and is what the result, ``show`` and ``report`` carry, with the samples
and the posterior probability of the release's side as its confidence.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import fmean

from envbisect.changepoint import ChangePoint, State, Step
from envbisect.errors import NotSeparated
from envbisect.policy import Judgement, Outcome, RegressMode, judge, metric_value
from envbisect.probekey import ran
from envbisect.sampling import SamplingPlan, not_separated_message
from envbisect.midpoints import ceil_log2
from envbisect.search import SearchResult, Status, Verdict


#: The largest metric a sample may have: beyond it, sums of a few samples overflow a float
#: (a loss that overflowed, or nearly; infinite ones too).
LARGEST = 1e300


def sample_values(rows: list[dict], plan: SamplingPlan, regress: RegressMode) -> tuple[list[float], Judgement | None]:
    """The metric of each row, in order; or, at the first row that gives none, the values
    before it and that row's judgement (a crash, a skip, a missing metric), which is the
    probe's: a sample that did not measure says nothing about the distribution."""
    values: list[float] = []
    for i, row in enumerate(rows):
        j = judge(row, regress)
        if j.outcome in (Outcome.SKIP, Outcome.ERROR):
            return values, j
        value = metric_value(row.get("metrics") or {}, plan.metric)
        if value is None or math.isnan(value):
            return values, Judgement(Outcome.ERROR, Verdict.UNTESTABLE,
                                     f"sample {i + 1}: metric {plan.metric} missing or not a number "
                                     f"({j.reason}); write it to $ENVBISECT_RESULT")
        if not abs(value) <= LARGEST:  # a loss that overflowed: no level of a normal model lies there
            return values, Judgement(Outcome.ERROR, Verdict.UNTESTABLE,
                                     f"sample {i + 1}: metric {plan.metric} is {value:g} ({j.reason}), beyond "
                                     f"what --samples auto can weigh (±{LARGEST:g}); judge by a threshold instead "
                                     f"(e.g. --threshold '{plan.metric}>1e30': bad above 1e30)")
        values.append(value)
    return values, None


class _Quota:
    """The decider of one release: its rows suffice once they hold its quota of samples
    (or one that measured nothing, which decides the probe untestable)."""

    def __init__(self, sampler: Sampler, label: str) -> None:
        self.sampler = sampler
        self.label = label

    def decide(self, rows: list[dict]) -> tuple[Judgement, bool] | None:
        values, failed = sample_values(rows, self.sampler.plan, self.sampler.regress)
        if failed is not None:
            return failed, False
        if len(values) < self.sampler.quota.get(self.label, 1):
            return None
        return self._provisional(values), False

    def row_judgement(self, rows: list[dict]) -> Judgement:
        values, failed = sample_values(rows, self.sampler.plan, self.sampler.regress)
        return failed or self._provisional(values)

    def _provisional(self, values: list[float]) -> Judgement:
        return Judgement(Outcome.SKIP, Verdict.UNTESTABLE,
                         f"sample {len(values)}: {self.sampler.plan.metric} {values[-1]:.4g} (judged at the end)")


class Sampler:
    """A run's sampling state: the plan, each release's quota of samples, and, once the
    search ended, each sampled release's verdict and confidence."""

    def __init__(self, plan: SamplingPlan, regress: RegressMode) -> None:
        self.plan = plan
        self.regress = regress
        self.quota: dict[str, int] = {}
        self.final: Step | None = None
        self.confidence: dict[str, float] = {}
        self.used: dict[str, int] = {}

    def decider(self, label: str) -> _Quota:
        return _Quota(self, label)

    def search(self, run, search, labels: list[str], start_at, jobs: int = 1):
        """Find where the metric's level changes among ``labels[search.lo:search.hi + 1]``
        (``start_at(i)`` begins probing candidate ``i``, :meth:`envbisect.driver.ActiveRun.start`),
        up to ``jobs`` releases sampled at once. Returns ``(SearchResult, learned, rounds)``;
        raises :class:`NotSeparated` when an endpoint gives no sample, or when the search
        is spent without the endpoints told apart."""
        lo = search.lo
        names = labels[lo:search.hi + 1]
        cp = ChangePoint(len(names), self.plan, find_fix=search.find_fix)
        learned: dict[int, object] = {}
        rounds = started = 0
        estimate = ceil_log2(len(names)) + 2
        while (step := cp.step(jobs)).state is State.SAMPLE:
            rounds += 1
            for p in step.picks:
                self.quota[names[p]] = self.used.get(names[p], 0) + 1
                if names[p] not in self.used:
                    started += 1
                    run.session.handler.probe_started(names[p], started, max(started, estimate))
            for p, probe in zip(step.picks, run.complete([start_at(lo + p) for p in step.picks])):
                learned[lo + p] = probe
                values, failed = sample_values(run.rows(names[p]), self.plan, self.regress)
                n = self.used.get(names[p], 0)
                if len(values) > n:
                    cp.add(p, values[n])
                    self.used[names[p]] = n + 1
                elif p in (0, len(names) - 1):
                    role = "good" if (p == 0) != search.find_fix else "bad"
                    reason = failed.reason if failed else probe.judgement.reason
                    raise NotSeparated(f"the {role} endpoint {names[p]} gives no {self.plan.metric} sample "
                                       f"({reason}); fix the recipe or pick another endpoint")
                else:
                    cp.exclude(p, (failed or probe.judgement).reason)
        if step.state is State.EXHAUSTED and not (sep := cp.endpoints()).separated:
            good, bad = (names[-1], names[0]) if search.find_fix else (names[0], names[-1])
            raise NotSeparated(not_separated_message(sep, self.plan, good, bad))
        self.final = step
        p_new = cp.p_new()
        sides = self._sides(cp, step, p_new)
        return self._result(cp, step, sides, len(names), lo, learned), \
            self._judged(cp, step, sides, p_new, names, lo, search.find_fix, learned), rounds

    def _sides(self, cp: ChangePoint, step: Step, p_new: dict[int, float]) -> dict[int, tuple[bool, float] | None]:
        """Per sampled active position: (on the new side, probability of that side), or
        None while undecided at the confidence (only when the search is spent)."""
        out: dict[int, tuple[bool, float] | None] = {}
        for p, q in p_new.items():
            if not cp.samples[p]:
                continue
            if step.state is State.FOUND:
                new = p >= step.first_new
                out[p] = (new, q if new else 1 - q)
            else:
                out[p] = (True, q) if q >= self.plan.confidence else \
                    (False, 1 - q) if q <= 1 - self.plan.confidence else None
        return out

    @staticmethod
    def _result(cp, step, sides, n, lo, learned) -> SearchResult:
        if step.state is State.FOUND:
            last_old, first_new = step.last_old, step.first_new
        else:
            last_old = max((p for p, s in sides.items() if s is not None and not s[0]), default=None)
            first_new = min((p for p, s in sides.items() if s is not None and s[0]), default=None)
        between = tuple(sorted(lo + p for p in range(n) if last_old is not None and first_new is not None
                               and last_old < p < first_new and (p in cp.excluded or sides.get(p, 0) is None)))
        exact = step.state is State.FOUND and not between
        return SearchResult(Status.FOUND if exact else Status.INCONCLUSIVE,
                            None if last_old is None else lo + last_old,
                            None if first_new is None else lo + first_new, between, tuple(learned))

    def _judged(self, cp, step, sides, p_new, names, lo, find_fix, learned) -> dict:
        """The learned probes with their final judgements (see the module docstring)."""
        old, new = (Verdict.BAD, Verdict.GOOD) if find_fix else (Verdict.GOOD, Verdict.BAD)
        levels = f"; good {step.sides.good.mean:.4g}, bad {step.sides.bad.mean:.4g}" if step.sides else ""
        out = {}
        for i, probe in learned.items():
            p = i - lo
            values = cp.samples[p]
            if p in cp.excluded:
                j = probe.judgement if probe.judgement.outcome is Outcome.ERROR or not values else \
                    Judgement(Outcome.SKIP, Verdict.UNTESTABLE, cp.excluded[p])
            elif sides.get(p) is None:
                q = p_new.get(p, math.nan)
                j = Judgement(Outcome.SKIP, Verdict.UNTESTABLE,
                              f"ambiguous after {len(values)} samples: undecided when the search was spent "
                              f"(P(new) = {q:.2f}, mean {fmean(values):.4g})")
            else:
                is_new, prob = sides[p]
                verdict = new if is_new else old
                self.confidence[names[p]] = prob
                where = (f"P = {prob:.4f}; mean {fmean(values):.4g} over {len(values)} "
                         f"sample{'s' if len(values) != 1 else ''}{levels}")
                j = Judgement(Outcome.GOOD if verdict is Verdict.GOOD else Outcome.BAD, verdict,
                              f"{self.plan.metric} like the {verdict.value} release at {self.plan.confidence:.0%} ({where})")
            out[i] = replace(probe, judgement=j)
        return out

    def annotate(self, result: dict, run) -> dict:
        """Add the samples to a run's result: ``sampling`` (the plan, the pooled sides'
        separation as ``endpoints``, the boundary's posterior probability), per probe
        ``samples`` (the values the search used, in order) and ``confidence`` (the
        posterior probability of its side), and ``executed``: every recipe run of the run
        (a probe's samples may span a resume)."""
        step = self.final
        sides = step.sides if step is not None else None
        result["sampling"] = dict(self.plan.as_dict(), endpoints=sides.as_dict() if sides else None,
                                  boundary_probability=step.probability if step is not None else None)
        for probe in result.get("probes") or []:
            label = probe["version"]
            values = sample_values(run.rows(label), self.plan, self.regress)[0]
            probe["samples"] = values[:self.used.get(label, len(values))]
            probe["confidence"] = self.confidence.get(label)
        rows = run.session.store.probes_for_run(run.id)
        result["executed"] = sum(1 for r in rows if r.get("reused_from") is None and ran(r))
        return result
