"""What a stored row is, apart from where it is stored: run kinds and statuses, the
columns kept as JSON or booleans and their encoding, and the field check that makes a
typo in a column name fail loudly. Pure; :mod:`envbisect.store` applies it to SQLite.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any


class RunKind(str, Enum):
    """What a run does; stored as its value."""

    BISECT = "bisect"
    CHECK = "check"
    MATRIX = "matrix"
    DATE = "date"
    NARROW = "narrow"


class RunStatus(str, Enum):
    """Where a run stands. RUNNING and INTERRUPTED runs can be resumed."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    DONE = "done"
    FAILED = "failed"


#: A run in one of these has a ``finished_at`` and is never resumed.
TERMINAL_STATUSES = frozenset({RunStatus.DONE, RunStatus.FAILED})


# Columns whose values are JSON text on disk and Python objects in memory.
JSON_COLUMNS = {
    "runs": ("settings", "argv", "result", "host", "owner"),
    "probes": ("requirements", "resolved", "metrics", "env_values", "fingerprint", "source", "outputs", "comparison"),
    "watches": ("state",),
    "listens": ("state",),
    "listen_requests": ("request",),
}
# Columns stored as 0/1 and returned as bool.
BOOL_COLUMNS = {"probes": ("timed_out", "flaky")}


def utc_now() -> str:
    """Current UTC time as ISO 8601 (sortable, unambiguous across machines)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def host_info() -> dict[str, str]:
    """The machine a run was recorded on, stored with the run for reports."""
    return {"os": platform.system(), "machine": platform.machine(),
            "python": platform.python_version()}


def check_fields(what: str, fields: dict[str, Any], allowed: frozenset[str]) -> None:
    """Reject unknown keyword fields so a typo fails loudly instead of being dropped."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TypeError(f"{what}() got unknown field(s) {', '.join(unknown)}; "
                        f"known fields: {', '.join(sorted(allowed))}")


def encode(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """Python values -> column values: JSON text, enum values, str paths (bools are ints)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in JSON_COLUMNS.get(table, ()):
            # default=str: paths and dates in settings are stored as their text.
            value = None if value is None else json.dumps(value, sort_keys=True, default=str)
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        out[key] = value
    return out


def decode(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Column values -> Python values (the inverse of :func:`encode`)."""
    for key in JSON_COLUMNS.get(table, ()):
        if row.get(key) is not None:
            row[key] = json.loads(row[key])
    for key in BOOL_COLUMNS.get(table, ()):
        if row.get(key) is not None:
            row[key] = bool(row[key])
    return row
