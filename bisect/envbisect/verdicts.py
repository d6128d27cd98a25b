"""One judgement of a stored or fresh probe under every judging setting of a run.

Pure (no I/O): :func:`judge_probe` applies, in order, the regress policy and thresholds
(:mod:`envbisect.policy`), the comparison with a reference release's outputs
(:mod:`envbisect.compare`) and a failure signature (:mod:`envbisect.signatures`). All
three read only what a probe row stores (exit status, metrics, output manifest and
comparison, output tails), so a stored run is re-judged under new settings without
running anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from envbisect.compare import Reference, Tolerance, judge_outputs
from envbisect.policy import Judgement, Outcome, RegressMode, Threshold, judge
from envbisect.runner import RawResult
from envbisect.search import Verdict
from envbisect.signatures import Signature


def judge_probe(raw: RawResult | Mapping[str, Any], mode: RegressMode, thresholds: tuple[Threshold, ...] = (),
                reference: Reference | None = None, tolerance: Tolerance = Tolerance(),
                signature: Signature | None = None) -> Judgement:
    """Judge one raw result (a fresh run's dict, or a stored probe row)."""
    base = judge(raw, mode, thresholds)
    row = raw.to_dict() if isinstance(raw, RawResult) else raw
    if reference is not None:
        base = _against_reference(base, row, reference, tolerance, bool(thresholds))
    if signature:
        base = signature.apply(base, row)
    return base


def _against_reference(base: Judgement, row: Mapping[str, Any], reference: Reference, tolerance: Tolerance,
                       thresholds: bool) -> Judgement:
    """A recipe that exited 0 or 1 is judged by its outputs (a met threshold stays BAD);
    an error, a skip or a timeout keeps its judgement."""
    if base.outcome not in (Outcome.GOOD, Outcome.BAD) or row.get("exit_code") not in (0, 1):
        return base
    found = judge_outputs(row.get("outputs"), row.get("comparison"), reference, tolerance)
    details = {"output_diffs": found.diffs, "diverged": list(found.diverged)}
    if found.matched is None:
        return Judgement(Outcome.ERROR, Verdict.UNTESTABLE, f"{found.reason} (recipe exited {row.get('exit_code')})",
                         details)
    if found.matched is False:
        return Judgement(Outcome.BAD, Verdict.BAD, found.reason, details)
    if thresholds and base.outcome is Outcome.BAD:
        return replace(base, details=details)
    return Judgement(Outcome.GOOD, Verdict.GOOD, found.reason, details)
