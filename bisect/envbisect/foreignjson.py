"""JSON from outside envbisect (a recipe's files, an index's pages, a tracker's replies).

One rule for all of them: JSON nested past Python's stack is invalid JSON like any other.
:func:`json.loads` raises :class:`RecursionError` there, which is no :class:`ValueError`,
so every reader that caught only ``ValueError`` ended the run with a traceback.
"""

from __future__ import annotations

import json


def loads(data: str | bytes) -> object:
    """:func:`json.loads`, raising :class:`ValueError` ("nested too deeply") for JSON nested
    past Python's stack, as for any other invalid JSON (and for bytes that are not UTF-8)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None
