"""Open a file a recipe wrote, or one a user named, only when it is a plain file.

Probe layer. A recipe, or a child it left behind, may put a FIFO, a device or a symbolic
link where a file is expected, or swap one in between a check and the read: the metrics
file (:mod:`envbisect.metrics`) and the output files (:mod:`envbisect.outputs`) are read
only through :func:`open_plain`, so nothing there can hang envbisect or point its read
elsewhere. Files a user names (a token file, the watch configuration) are read through
:func:`read_named`: links are followed there (a Kubernetes secret is a link), but a FIFO
(which would wait for a writer for ever) or a device (``/dev/zero`` never ends) is refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_plain(path: Path, *, follow_links: bool = False) -> BinaryIO | None:
    """``path`` opened for reading when it is a plain file, else None: checked with
    ``lstat`` (``stat`` when ``follow_links``) first (nothing else is opened at all), then
    opened non-blocking, without following a link unless told to, and checked again once
    open. Raises :class:`OSError` (a missing or unreadable file) for the caller to name."""
    if not stat.S_ISREG((os.stat if follow_links else os.lstat)(path).st_mode):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0)))
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic link now
            return None
        raise
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        return None
    return fh


def read_named(path: Path, limit: int) -> bytes:
    """The contents of a file the user named, when it is a plain file (after links) of at
    most ``limit`` bytes. Raises :class:`OSError` whose ``strerror`` says what is wrong."""
    fh = open_plain(path, follow_links=True)
    if fh is None:
        raise OSError(errno.EINVAL, f"it {what_is(path)}, not a regular file")
    with fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB")
    return data


def what_is(path: Path) -> str:
    """What is at ``path`` when it is no regular file (links followed), for an error line:
    "is a directory", "is a FIFO", ..., "does not exist"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a symbolic link to nothing" if os.path.islink(path) else "does not exist"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    kinds = ((stat.S_ISREG, "is a regular file"), (stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO"),
             (stat.S_ISSOCK, "is a socket"), (stat.S_ISCHR, "is a device"), (stat.S_ISBLK, "is a device"))
    return next((name for test, name in kinds if test(mode)), "is not a regular file")
