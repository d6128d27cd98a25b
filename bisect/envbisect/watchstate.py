"""What a watch remembers between checks, when it is due, and ``bisect watch status``.

The ``state`` JSON of a ``watches`` row holds the baseline, the newest judged release,
the findings (a regression stays *open* until a later fix is found) and the findings
queued for attachment. The row's columns hold the schedule: ``last_check`` (when the
last check started), ``next_check`` (when the next is due, later than the interval after
failures: see :func:`envbisect.watchplan.backoff_s`), ``failures`` (consecutive failed
checks) and ``last_error``. The set of releases seen is in the ``watch_releases`` table
(:mod:`envbisect.watchrows`). No I/O here beyond the store handed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from packaging.version import Version

from envbisect.watchconfig import WatchSpec
from envbisect.watchplan import DECISIVE, backoff_s

#: Findings kept per watch (the oldest closed ones are dropped first).
MAX_FINDINGS = 50


@dataclass
class Known:
    """A release and the verdict its probe reached."""

    version: str
    verdict: str


@dataclass
class WatchState:
    """What a watch remembers between cycles (the ``state`` JSON of its row)."""

    baseline: Known | None = None
    known: Known | None = None  # the newest release with a GOOD or BAD verdict
    pending: list[dict] = field(default_factory=list)  # findings to attach: run_id, issue, kind
    last: Known | None = None  # the newest release and its verdict at the last check
    findings: list[dict] = field(default_factory=list)  # kind, version, old, run_id, fixed_in
    question: str | None = None  # hash of recipe, pins, package, index: what the verdicts answer

    @classmethod
    def load(cls, row: dict | None) -> WatchState:
        data = (row or {}).get("state") or {}
        known = lambda v: Known(**v) if v else None  # noqa: E731
        return cls(known(data.get("baseline")), known(data.get("known")), list(data.get("pending") or []),
                   known(data.get("last")), list(data.get("findings") or []), data.get("question"))

    def dump(self) -> dict:
        return asdict(self)

    def judged(self, listed: list[str], verdicts: dict[str, str | None]) -> None:
        """After a check: the newest listed release with a decisive verdict, and the newest."""
        decisive = [v for v in listed if verdicts.get(v) in DECISIVE]
        if decisive:
            self.known = Known(decisive[-1], str(verdicts[decisive[-1]]))
        self.last = Known(listed[-1], verdicts.get(listed[-1]) or "not probed")

    def found(self, kind: str, version: str, old: str, run_id: int) -> dict | None:
        """Record a conclusive finding; a fix closes the newest open regression below it,
        which is returned (so the caller can say "introduced in X, fixed in Y")."""
        closed = None
        if kind == "fix":
            below = [f for f in self.open() if Version(f["version"]) < Version(version)]
            if below:
                closed = max(below, key=lambda f: Version(f["version"]))
                closed["fixed_in"] = version
        self.findings.append({"kind": kind, "version": version, "old": old, "run_id": run_id, "fixed_in": None})
        if len(self.findings) > MAX_FINDINGS:
            drop = next((f for f in self.findings if f["kind"] == "fix" or f.get("fixed_in")), self.findings[0])
            self.findings.remove(drop)
        return closed

    def open(self) -> list[dict]:
        """Regressions not fixed by a later release (as far as the watch has seen)."""
        return [f for f in self.findings if f["kind"] == "regression" and not f.get("fixed_in")]


def legacy_seen(listed: list[str], row: dict | None) -> dict[str, str | None]:
    """The releases a watch stored before the set of seen releases was (schema 2) has
    seen: every listed release up to its ``last_seen``, with its last known verdict."""
    last = (row or {}).get("last_seen")
    if not last:
        return {}
    seen: dict[str, str | None] = {v: None for v in listed if Version(v) <= Version(last)}
    known = WatchState.load(row).known
    if known is not None:
        seen[known.version] = known.verdict
    return seen


def _at(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def due_in(spec: WatchSpec, row: dict | None, now: float) -> float:
    """Seconds until ``spec`` is due (0 or less: due now; never checked: due now)."""
    row = row or {}
    due = _at(row.get("next_check"))
    if due is None:  # never checked, or checked before next_check was stored
        last = _at(row.get("last_check"))
        due = None if last is None else last + spec.every_s
    return 0.0 if due is None else due - now


def schedule(spec: WatchSpec, row: dict | None, started: float, error: str | None) -> dict[str, Any]:
    """The row's schedule columns after a check that began at ``started``: due again
    ``every`` later, or after a back-off when it failed (the error kept until a success)."""
    failures = 0 if error is None else int((row or {}).get("failures") or 0) + 1
    wait = spec.every_s if error is None else backoff_s(spec.every_s, failures)
    fields: dict[str, Any] = {"last_check": _iso(started), "next_check": _iso(started + wait), "failures": failures}
    fields["last_error"] = None if error is None else " ".join(error.split())
    return fields


def short(seconds: float) -> str:
    """A duration for humans: ``5h59m`` or ``3m07s``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24:02d}h"
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def status(specs: list[WatchSpec], rows: list[dict], now: float) -> list[dict]:
    """One entry per configured watch (then per stored watch no longer configured):
    last check, last verdict, next check, last error, open findings."""
    by_name = {row["name"]: row for row in rows}
    out = [_entry(spec.name, spec.package, by_name.get(spec.name), now, spec) for spec in specs]
    configured = {spec.name for spec in specs}
    out += [_entry(row["name"], row.get("package"), row, now, None) for row in rows if row["name"] not in configured]
    return out


def _entry(name: str, package: str | None, row: dict | None, now: float, spec: WatchSpec | None) -> dict:
    state = WatchState.load(row)
    row = row or {}
    due = due_in(spec, row, now) if spec is not None else None
    next_check = None if due is None else _iso(now + max(due, 0.0))
    return {
        "name": name, "package": package, "configured": spec is not None,
        "last_check": row.get("last_check"),
        "last_verdict": asdict(state.last or state.known) if (state.last or state.known) else None,
        "next_check": next_check, "due_in_s": None if due is None else round(max(due, 0.0)),
        "failures": int(row.get("failures") or 0), "last_error": row.get("last_error"),
        "open_findings": state.open(), "queued": len(state.pending),
    }


#: The columns of ``bisect watch status``, in the order :func:`cells` fills them.
COLUMNS = ("watch", "last check", "last verdict", "next check", "last error", "open findings")


def cells(entry: dict) -> tuple[str, ...]:
    """A status entry as the text of the table's :data:`COLUMNS`."""
    verdict, findings = entry["last_verdict"], [
        f"regression {f['version']} (run {f['run_id']})" for f in entry["open_findings"]]
    if entry["queued"]:
        findings.append(f"{entry['queued']} queued to post")
    if entry["next_check"] is None:
        when = "not configured"
    else:
        when = "due now" if entry["due_in_s"] == 0 else f"in {short(entry['due_in_s'])} ({entry['next_check']})"
    error = entry["last_error"] and f"{entry['failures']} failed check(s): {entry['last_error']}"
    last = entry["last_check"]
    return (entry["name"] if entry["configured"] else f"{entry['name']} (not in config)",
            datetime.fromisoformat(last).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if last else "never",
            f"{verdict['version']} {verdict['verdict']}" if verdict else "-", when, error or "-",
            ", ".join(findings) or "none")


__all__ = ["COLUMNS", "Known", "WatchState", "cells", "due_in", "legacy_seen", "schedule", "short", "status"]
