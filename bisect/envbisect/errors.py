"""Errors a user can act on.

Every failure that reaches the user is an :class:`EnvbisectError` whose message is
shown verbatim on one line (it names the problem and the fix) and whose ``exit_code``
becomes the process exit status. Only the CLI catches these; library code raises them.
"""

from __future__ import annotations

#: Exit status for bad input or usage (matches Typer/Click's own usage errors).
EXIT_USAGE = 2
#: Exit status when the environment failed, not the input: the index is unreachable,
#: the disk is full, the cache is unusable. Retrying later (or elsewhere) can succeed.
EXIT_ENVIRONMENT = 6
#: Exit status when the issue tracker refused or could not be reached.
EXIT_TRACKER = 7


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (packaging's parser errors add a line with a
    caret under the input; a server error may add a traceback), else its type's name."""
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def error_reason(exc: BaseException) -> str:
    """What went wrong, for an error line: an :class:`OSError`'s ``strerror`` ("No space
    left on device", without the errno and path), else the message."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


class EnvbisectError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class RecipeError(EnvbisectError):
    """The recipe file is missing, has no PEP 723 block, or its settings are invalid."""


class ConfigError(EnvbisectError):
    """A setting, flag or config file value is invalid."""


class IndexUnreachable(EnvbisectError):
    """A package index could not be reached (network down, DNS, repeated 5xx). A run
    that meets this mid-way is interrupted, never judged: rerun to resume."""

    exit_code = EXIT_ENVIRONMENT


class IndexInvalid(IndexUnreachable):
    """A package index answered with a page that cannot be read (malformed PEP 691 JSON):
    as unusable as an unreachable one, and it is the index that must be fixed."""


class UnknownPackage(EnvbisectError):
    """The index has no project of that name."""


class NoCandidates(EnvbisectError):
    """The candidate list is empty; the message says why."""


class CacheError(EnvbisectError):
    """The cache directory cannot be created or written."""

    exit_code = EXIT_ENVIRONMENT


class DiskFull(CacheError):
    """The disk holding the cache directory is full: the run is interrupted, not judged."""


class InstallFailed(EnvbisectError):
    """An environment could not be built. Sessions turn this into an untestable probe."""


class RunNotFound(EnvbisectError):
    """No run with that id in the store."""


class TrackerError(EnvbisectError):
    """An issue tracker refused or could not be reached; the finding stays queued."""

    exit_code = EXIT_TRACKER


class AlreadyRunning(EnvbisectError):
    """Another ``bisect watch`` holds the cache directory's lock, or another live process
    is working on the same run."""

    exit_code = 75  # EX_TEMPFAIL: try again once the other instance has stopped


class ExecutorError(EnvbisectError):
    """The machines that run probes cannot be reached or cannot run this recipe."""

    exit_code = EXIT_ENVIRONMENT


class NotSeparated(EnvbisectError):
    """``--samples auto``: the endpoints' metric distributions could not be told apart
    (or an endpoint gave no metric), so there is no change in the metric to locate."""

    exit_code = 4  # the bisection is inconclusive, as `bisect run` exits when it cannot decide
