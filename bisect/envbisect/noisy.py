"""Sampled verdicts in a run (``--metric NAME --samples auto``): the statistics of
:mod:`envbisect.sampling` applied to a run's stored rows.

Every sample is one recipe run, stored as one probe row (``attempt`` is the sample's
index, and the recipe sees it as ``$ENVBISECT_SAMPLE``), exactly as ``--retries``
attempts are; only *how many* runs a probe gets is decided here, by a
:class:`~envbisect.session.Decider`. Verdicts are recomputed from the rows every time
(never stored apart), so a run killed at any point resumes with every sample it took,
and a later run with other sampling settings reuses the stored samples (the settings
judge, they are not in the probe key).

1. :meth:`Sampler.sample_ends` samples the good and the bad endpoint in lock-step rounds
   (3, 4, ... samples each) until :func:`~envbisect.sampling.separate` separates them;
   the test of round ``n`` uses each endpoint's first ``n`` samples, so a resumed run
   takes the same decisions.
2. Every other candidate is sampled one run at a time until
   :func:`~envbisect.sampling.classify` says good, bad or ambiguous (recorded as
   untestable with that reason: never a boundary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from envbisect.errors import NotSeparated
from envbisect.policy import Judgement, Outcome, RegressMode, judge, metric_value
from envbisect.sampling import (Decision, SamplingPlan, Separation, classify, endpoint_rounds,
                                not_separated_message, separate)
from envbisect.search import Verdict
from envbisect.probekey import ran

_DECIDED = {Decision.GOOD: (Outcome.GOOD, Verdict.GOOD), Decision.BAD: (Outcome.BAD, Verdict.BAD),
            Decision.AMBIGUOUS: (Outcome.SKIP, Verdict.UNTESTABLE)}


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
        values.append(value)
    return values, None


@dataclass
class _Endpoint:
    """The decider of an endpoint: ``quota`` samples per round, then its role's verdict."""

    sampler: Sampler
    good: bool

    def decide(self, rows: list[dict]) -> tuple[Judgement, bool] | None:
        values, failed = sample_values(rows, self.sampler.plan, self.sampler.regress)
        if failed is not None:
            return failed, False
        if self.sampler.ends is None and len(values) < self.sampler.quota:
            return None
        return self._judgement(len(values)), False

    def row_judgement(self, rows: list[dict]) -> Judgement:
        values, failed = sample_values(rows, self.sampler.plan, self.sampler.regress)
        return failed or self._judgement(len(values))

    def _judgement(self, n: int) -> Judgement:
        role, outcome = ("good", Outcome.GOOD) if self.good else ("bad", Outcome.BAD)
        verdict = Verdict.GOOD if self.good else Verdict.BAD
        ends = self.sampler.ends
        if ends is None:
            return Judgement(outcome, verdict, f"{role} endpoint: sample {n}")
        return Judgement(outcome, verdict, f"{role} endpoint of {self.sampler.plan.metric}: {ends.reason}")


@dataclass
class _Candidate:
    """The decider of a candidate: the sequential test against the separated endpoints."""

    sampler: Sampler

    def decide(self, rows: list[dict]) -> tuple[Judgement, bool] | None:
        j, decided = self._classify(rows)
        return (j, False) if decided else None

    def row_judgement(self, rows: list[dict]) -> Judgement:
        return self._classify(rows)[0]

    def _classify(self, rows: list[dict]) -> tuple[Judgement, bool]:
        """The judgement so far and whether it is final. An undecided sample is recorded
        as a skip ("sample 2: undecided ..."): a row's own outcome is never a verdict."""
        plan, ends = self.sampler.plan, self.sampler.ends
        values, failed = sample_values(rows, plan, self.sampler.regress)
        if failed is not None:
            return failed, True
        if ends is None:  # a candidate probed before the endpoints were sampled: a bug, say so
            raise RuntimeError("a candidate was sampled before the endpoints were separated")
        c = classify(values, ends, plan)
        if c.decision is Decision.MORE:
            return Judgement(Outcome.SKIP, Verdict.UNTESTABLE, f"sample {c.n}: {c.reason}"), False
        outcome, verdict = _DECIDED[c.decision]
        return Judgement(outcome, verdict, c.reason), True


class Sampler:
    """A run's sampling state: the plan, the endpoints' roles and, once sampled, their
    separation (what every candidate is classified against)."""

    def __init__(self, plan: SamplingPlan, regress: RegressMode) -> None:
        self.plan = plan
        self.regress = regress
        self.ends: Separation | None = None
        self.quota = 0
        self.roles: dict[str, bool] = {}

    def decider(self, label: str):
        """The decider for ``label``: an endpoint's, or a candidate's."""
        if label in self.roles:
            return _Endpoint(self, self.roles[label])
        return _Candidate(self)

    def sample_ends(self, run, good: str, bad: str, start) -> Separation:
        """Sample the endpoints ``good`` and ``bad`` (``start(label)`` begins probing one,
        :meth:`envbisect.driver.ActiveRun.start`) round by round until separated;
        :class:`NotSeparated` when they are not after ``max_samples`` each, or when one
        of them gives no metric."""
        self.roles = {good: True, bad: False}
        sep = None
        for n in endpoint_rounds(self.plan):
            self.quota = n
            probes = run.complete([start(good), start(bad)])
            for label, probe in zip((good, bad), probes):
                if probe.judgement.verdict is Verdict.UNTESTABLE or probe.judgement.outcome is Outcome.ERROR:
                    role = "good" if self.roles[label] else "bad"
                    raise NotSeparated(f"the {role} endpoint {label} gives no {self.plan.metric} sample "
                                       f"({probe.judgement.reason}); fix the recipe or pick another endpoint")
            values = [sample_values(run.rows(label), self.plan, self.regress)[0][:n] for label in (good, bad)]
            sep = separate(values[0], values[1], self.plan)
            if sep.separated:
                self.ends = sep
                return sep
        assert sep is not None
        raise NotSeparated(not_separated_message(sep, self.plan, good, bad))

    def annotate(self, result: dict, run) -> dict:
        """Add the samples to a run's result: ``sampling`` (plan and endpoints), per probe
        ``samples`` (the values in order) and ``confidence``, and ``executed``: every
        recipe run of the run (a probe's samples may span a resume)."""
        result["sampling"] = dict(self.plan.as_dict(), endpoints=self.ends.as_dict() if self.ends else None)
        for probe in result.get("probes") or []:
            probe["samples"] = sample_values(run.rows(probe["version"]), self.plan, self.regress)[0]
            probe["confidence"] = self.plan.confidence
        rows = run.session.store.probes_for_run(run.id)
        result["executed"] = sum(1 for r in rows if r.get("reused_from") is None and ran(r))
        return result
