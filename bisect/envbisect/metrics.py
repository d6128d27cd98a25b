"""Read the metrics file a recipe may write to ``$ENVBISECT_RESULT``, safely.

Only a bounded, regular file is read, and nothing a recipe puts there (a FIFO, a symlink,
a huge file, invalid JSON, a JSON list) can hang envbisect or cost the probe its exit
status: the answer is the JSON object, or ``None`` and a note saying why it was dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

from envbisect import foreignjson
from envbisect.plainfile import open_plain
from envbisect.printable import printable_json

#: Metrics files larger than this are dropped (with a note), never read whole.
METRICS_MAX_BYTES = 64 * 1024


def read_metrics(path: Path) -> tuple[dict | None, str | None]:
    """Read the recipe's metrics file: (the JSON object, None) or (None, why it was
    dropped). A missing file is (None, None). Never reads more than the cap plus one
    byte and never raises: bad metrics must not cost the probe its exit status.

    Only a regular file is read (:func:`envbisect.plainfile.open_plain`: a symlink or a
    FIFO the recipe put there, or swapped in between the check and the open, is refused
    and cannot hang envbisect)."""
    try:
        fh = open_plain(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"metrics file cannot be read: {exc.strerror or exc}"
    if fh is None:
        return None, "metrics path is not a regular file"
    with fh:
        info = os.fstat(fh.fileno())
        data = fh.read(METRICS_MAX_BYTES + 1)
    if len(data) > METRICS_MAX_BYTES:
        return None, (
            f"metrics file is {_human_size(max(info.st_size, len(data)))}, "
            f"over the {_human_size(METRICS_MAX_BYTES)} cap"
        )
    try:
        value = foreignjson.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return None, f"metrics file is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"metrics file holds {_json_kind(value)}, not a JSON object"
    return printable_json(value), None  # names and strings are shown: no control characters


def _json_kind(value: object) -> str:
    """'a list', 'a number' ... for a parsed JSON value that is not an object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list"


def _human_size(n: int) -> str:
    """Binary units, one decimal: '64 KiB', '3.1 MiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            text = f"{n / scale:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{n} bytes"
