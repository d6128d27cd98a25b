"""Turn a raw result into an outcome: the regress policy and metric thresholds.

Pure (no I/O): the same stored :class:`~envbisect.runner.RawResult` can be judged
again under another ``--regress`` mode or threshold without re-running anything, which
is why :func:`judge` also takes the dict form the store keeps.

Two things come out of a judgement, kept apart on purpose (as cargo-bisect-rustc keeps
search apart from its regress policy): the *outcome* that is recorded and shown (an
error stays ERROR even when the mode counts it as bad) and the *verdict* the search
uses (GOOD / BAD / UNTESTABLE).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from envbisect.errors import ConfigError
from envbisect.runner import EXIT_UNCAUGHT, RawResult, signal_name
from envbisect.search import Verdict

#: The exit status a recipe uses for "cannot test here" (as in ``git bisect run``).
SKIP_EXIT = 125


class Outcome(str, Enum):
    """What happened to one probe, as recorded and reported."""

    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    ERROR = "error"


class RegressMode(str, Enum):
    """Which results count as the regression (``--regress``)."""

    EXIT = "exit"  # exit 1 is bad; other codes, signals and timeouts are untestable
    ERROR = "error"  # any error (other exit codes, signals, timeouts) counts as bad
    CRASH = "crash"  # signals and timeouts count as bad; other exit codes stay untestable


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_THRESHOLD = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w.\-]*)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+)\s*$")


@dataclass(frozen=True)
class Threshold:
    """A metric condition that marks a run BAD: ``max_abs_diff>1e-3`` means BAD when the
    recipe's ``max_abs_diff`` metric is greater than 0.001."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Parse ``METRIC OP NUMBER`` (OP one of > >= < <=); ConfigError otherwise."""
        match = _THRESHOLD.match(text)
        if match is None:
            raise ConfigError(
                f"threshold {text!r} is not METRIC OP NUMBER with OP one of > >= < <=; "
                "write e.g. 'max_abs_diff>1e-3'"
            )
        try:
            value = float(match["value"])
        except ValueError:
            value = math.nan
        if math.isnan(value):
            raise ConfigError(
                f"threshold {text!r} compares with {match['value']!r}, which is not a number; "
                "write e.g. 'max_abs_diff>1e-3'"
            )
        return cls(metric=match["metric"], op=match["op"], value=value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def met_by(self, observed: float) -> bool:
        """Whether ``observed`` meets the condition. NaN meets every condition: a metric
        that came out as not-a-number is a broken result, never a pass."""
        return math.isnan(observed) or _OPS[self.op](observed, self.value)


@dataclass(frozen=True)
class Judgement:
    """The outcome to record, the verdict for the search and a short human reason
    ("exit 1", "killed by SIGSEGV", "max_abs_diff=41.7 > 0.001")."""

    outcome: Outcome
    verdict: Verdict
    reason: str
    #: What else the judgement looked at, for reports: per-output differences from a
    #: reference (:mod:`envbisect.compare`), whether a signature matched (:mod:`envbisect.signatures`).
    details: dict | None = field(default=None, compare=False)


def judge(
    raw: RawResult | Mapping[str, Any],
    mode: RegressMode = RegressMode.EXIT,
    thresholds: Sequence[Threshold] = (),
) -> Judgement:
    """Judge one raw result (or its stored dict form) under ``mode`` and ``thresholds``.

    Exit 0 is GOOD, 1 BAD, 125 SKIP; any other exit status, a signal or a timeout is an
    ERROR whose verdict ``mode`` decides. Thresholds re-judge only runs that exited 0 or
    1 (see :func:`_apply_thresholds`).
    """
    if not isinstance(raw, RawResult):
        raw = RawResult.from_dict(raw)
    mode = RegressMode(mode)
    if raw.env_changed:
        return Judgement(Outcome.ERROR, Verdict.UNTESTABLE,
                         f"the recipe changed its environment ({raw.env_changed}); a recipe must not install into "
                         "its env: list what it needs in its dependencies")
    if raw.timed_out:
        return _error(f"timed out after {_seconds(raw.duration_s)} s", mode, crash=True)
    if raw.signal is not None:
        return _error(f"killed by {signal_name(raw.signal)}", mode, crash=True)
    if raw.exit_code is None:
        return _error("ended without an exit status", mode, crash=False)
    if raw.exit_code == SKIP_EXIT:
        return Judgement(Outcome.SKIP, Verdict.UNTESTABLE, f"exit {SKIP_EXIT}: cannot test here")
    if raw.exit_code == EXIT_UNCAUGHT:
        return _error(f"uncaught {_last_line(raw.stderr_tail) or 'exception'}", mode, crash=False)
    if raw.exit_code not in (0, 1):
        return _error(f"exit {raw.exit_code}", mode, crash=False)
    by_exit = _decided(Outcome.GOOD if raw.exit_code == 0 else Outcome.BAD, f"exit {raw.exit_code}")
    return _apply_thresholds(by_exit, raw.exit_code, raw.metrics or {}, thresholds)


def _last_line(text: str | None, limit: int = 200) -> str:
    """The exception line of a traceback (its last non-empty line), shortened."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def install_failure(reason: str) -> Judgement:
    """The judgement for a candidate whose environment could not be built: untestable."""
    return Judgement(Outcome.SKIP, Verdict.UNTESTABLE, f"install failed: {reason}")


def combine(judgements: Sequence[Judgement]) -> tuple[Judgement, bool]:
    """Merge the judgements of repeated runs of one candidate (``--retries``).

    Returns (judgement, flaky). All verdicts equal: the first run's judgement, not flaky.
    Both GOOD and BAD seen: flaky, recorded as SKIP / UNTESTABLE with the counts in the
    reason ("flaky: 2 good, 1 bad") so the search steps around it. Untestable runs mixed
    with a single decided verdict: that verdict stands (the untestable runs say nothing
    about the regression) and the reason notes how many runs were untestable.
    """
    if not judgements:
        raise ValueError("combine() needs at least one judgement")
    first = judgements[0]
    if all(j.verdict == first.verdict for j in judgements):
        return first, False
    counts = {v: sum(1 for j in judgements if j.verdict == v) for v in Verdict}
    untestable = counts[Verdict.UNTESTABLE]
    if counts[Verdict.GOOD] and counts[Verdict.BAD]:
        reason = f"flaky: {counts[Verdict.GOOD]} good, {counts[Verdict.BAD]} bad"
        if untestable:
            reason += f", {untestable} untestable"
        return Judgement(Outcome.SKIP, Verdict.UNTESTABLE, reason), True
    decided = next(j for j in judgements if j.verdict != Verdict.UNTESTABLE)
    note = f"{untestable} of {len(judgements)} runs untestable"
    return replace(decided, reason=f"{decided.reason} ({note})"), False


def _decided(outcome: Outcome, reason: str) -> Judgement:
    """A GOOD or BAD judgement (the verdict mirrors the outcome)."""
    return Judgement(outcome, Verdict.GOOD if outcome is Outcome.GOOD else Verdict.BAD, reason)


def _error(reason: str, mode: RegressMode, *, crash: bool) -> Judgement:
    """An ERROR; ``crash`` (signal or timeout) decides whether CRASH mode counts it bad."""
    counts_bad = mode is RegressMode.ERROR or (mode is RegressMode.CRASH and crash)
    return Judgement(Outcome.ERROR, Verdict.BAD if counts_bad else Verdict.UNTESTABLE, reason)


def _apply_thresholds(
    by_exit: Judgement, exit_code: int, metrics: Mapping[str, Any], thresholds: Sequence[Threshold]
) -> Judgement:
    """Re-judge a run that exited 0 or 1 from its metrics.

    Any threshold met: BAD. None met and every metric present: GOOD. None met but some
    metric missing or not a number: an ERROR that is never a verdict (untestable under
    every ``--regress`` mode): the user asked to judge by a number the recipe did not
    give, so falling back to the exit status would silently answer another question.
    """
    if not thresholds:
        return by_exit
    met: list[str] = []
    clear: list[str] = []
    missing: list[str] = []
    for threshold in thresholds:
        observed = metric_value(metrics, threshold.metric)
        if observed is None:
            missing.append(threshold.metric)
        elif threshold.met_by(observed):
            met.append(f"{threshold.metric}={observed:g} {threshold.op} {threshold.value:g}")
        else:
            clear.append(f"{threshold.metric}={observed:g} not {threshold.op} {threshold.value:g}")
    overridden = f" (recipe exited {exit_code})"
    if met:
        return _decided(Outcome.BAD, "; ".join(met) + (overridden if exit_code != 1 else ""))
    if not missing:
        return _decided(Outcome.GOOD, "; ".join(clear) + (overridden if exit_code != 0 else ""))
    names = ", ".join(missing)
    return Judgement(Outcome.ERROR, Verdict.UNTESTABLE,
                     f"threshold metric {names} missing or not a number (recipe exited {exit_code}); "
                     "write it to $ENVBISECT_RESULT or judge by another --threshold")


def metric_value(metrics: Mapping[str, Any], name: str) -> float | None:
    """The numeric metric ``name`` (a top-level key, else a dotted path into nested
    objects), or None when absent or not a number (booleans are not numbers)."""
    value: Any = metrics.get(name)
    if value is None and "." in name:
        value = metrics
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float still compares as infinite
        return math.inf if value > 0 else -math.inf


def _seconds(duration: float) -> str:
    """Seconds for a reason: whole seconds from 10 s up, one decimal below."""
    return f"{duration:.0f}" if duration >= 10 else f"{duration:.1f}"
