"""Open a file a recipe wrote, only when it is a plain file.

Probe layer. A recipe, or a child it left behind, may put a FIFO, a device or a symbolic
link where a file is expected, or swap one in between a check and the read: the metrics
file (:mod:`envbisect.metrics`) and the output files (:mod:`envbisect.outputs`) are read
only through :func:`open_plain`, so nothing there can hang envbisect or point its read
elsewhere.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_plain(path: Path) -> BinaryIO | None:
    """``path`` opened for reading when it is a plain file, else None: checked with
    ``lstat`` first (nothing else is opened at all), then opened non-blocking without
    following a link and checked again once open. Raises :class:`OSError` (a missing or
    unreadable file) for the caller to name."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic link now
            return None
        raise
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        return None
    return fh
