"""The last line of defence at the CLI boundary: an unexpected exception (a bug in
envbisect or in a library under it) becomes one line on stderr plus a log file holding the
traceback, never a bare traceback; ``--debug`` (or ``ENVBISECT_DEBUG=1``) prints it instead.

The log goes to ``<cache>/logs`` of the default cache directory (``ENVBISECT_CACHE_DIR`` or
``./cache``) when that exists, else to the system's temporary directory; its text is
redacted like every other output.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path

from envbisect.redact import redact

#: Exit status for an unexpected internal error (``EX_SOFTWARE`` from sysexits.h).
EXIT_BUG = 70
DEBUG_ENV = "ENVBISECT_DEBUG"

#: Set by the root ``--debug`` option.
debug = False


def debugging() -> bool:
    return debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _log_dir() -> Path:
    from envbisect.config import default_cache_dir  # only when a bug is logged

    logs = default_cache_dir().absolute() / "logs"
    return logs if logs.is_dir() and os.access(logs, os.W_OK) else Path(tempfile.gettempdir())


def write(exc: BaseException) -> Path | None:
    """Write the traceback of ``exc`` to a new log file; its path, or None if nothing
    could be written (a full or read-only disk must not hide the one-line message)."""
    text = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        fd, name = tempfile.mkstemp(prefix=f"envbisect-crash-{time.strftime('%Y%m%dT%H%M%S')}-", suffix=".log",
                                    dir=_log_dir())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return Path(name)
    except OSError:
        return None


def one_line(exc: BaseException, log: Path | None) -> str:
    """The message printed instead of the traceback."""
    where = f"the traceback is in {log}" if log else "no log could be written"
    what = " ".join(redact(str(exc)).split())[:200]
    return (f"error: envbisect failed unexpectedly ({type(exc).__name__}: {what}); {where}; "
            "rerun with --debug to print it, and please report it")
