"""The watch daemon's plumbing: its log (one line per event, secrets masked), the one
daemon per cache directory lock, and SIGTERM/SIGINT turned into :class:`Shutdown`.

Used by :mod:`envbisect.watch` (the cycle) and :mod:`envbisect.listen` (the listener
logs to the same logger).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from envbisect import secrets
from envbisect.config import CachePaths
from envbisect.errors import AlreadyRunning
from envbisect.policy import Judgement
from envbisect.printable import printable
from envbisect.redact import redact
from envbisect.trackers import TOKEN_ENV

LOG_NAME = "envbisect.watch"
LOG_FILE = "watch.log"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 3

log = logging.getLogger(LOG_NAME)


class Shutdown(BaseException):
    """SIGTERM/SIGINT arrived: unwind (killing the running recipe) and stop. A
    BaseException so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def scrub(text: str) -> str:
    """``text`` on one line with URL credentials and the tracker token masked, and no
    control character (an issue comment's text reaches the log through a request's error,
    and an escape sequence must not act on the terminal that tails the log): for log
    records and for the errors stored in a watch's row."""
    text = printable(redact(text))
    try:
        token = secrets.read_token(TOKEN_ENV)  # from the environment, the CLI's memory or a file
    except OSError:
        token = ""
    if len(token) >= 4:
        text = text.replace(token, "***")
    return " ".join(text.split())


class _MaskSecrets(logging.Filter):
    """Masks URL credentials and the tracker token in every record (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None  # one line per event
        return True


def setup_logging(cache: CachePaths, stream=None) -> logging.Logger:
    """Log to ``stream`` (stderr) and a rotating file in the cache's logs directory."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    cache.logs.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    handlers = [logging.StreamHandler(stream or sys.stderr),
                logging.handlers.RotatingFileHandler(cache.logs / LOG_FILE, maxBytes=LOG_MAX_BYTES,
                                                     backupCount=LOG_BACKUPS, encoding="utf-8")]
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(_MaskSecrets())
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


@contextmanager
def daemon_lock(root: Path) -> Iterator[None]:
    """Hold the cache directory's watch lock; :class:`AlreadyRunning` names the holder."""
    lock, pid_file = FileLock(str(root / "watch.lock"), timeout=0), root / "watch.pid"
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = pid_file.read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise AlreadyRunning(f"another `bisect watch` (PID {holder}) is already running on cache dir {root}; "
                             f"stop it first (kill {holder}) or pass a different --cache-dir") from None
    try:
        pid_file.write_text(f"{os.getpid()}\n")
        yield
    finally:
        pid_file.unlink(missing_ok=True)
        lock.release()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGTERM/SIGINT into :class:`Shutdown`; later ones are ignored."""
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:
            return  # already unwinding: a second signal must not interrupt the cleanup
        fired.append(signum)
        raise Shutdown(signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class LogHandler:
    """Session progress as log lines, prefixed with the watch's name."""

    def __init__(self, name: str) -> None:
        self.prefix = f"[{name}]"

    def probe_started(self, label: str, step: int, estimate: int) -> None:
        log.info("%s probe %s (step %d of about %d)", self.prefix, label, step, estimate)

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None:
        log.info("%s %s: %s (%s)%s", self.prefix, label, judgement.outcome.value, judgement.reason,
                 ", recorded earlier" if reused else "")

    def note(self, message: str) -> None:
        log.info("%s %s", self.prefix, message)
