"""Settings and cache paths.

Precedence, lowest first: built-in defaults < ``ENVBISECT_*`` environment variables <
command-line flags. Each CLI option is paired with its environment variable (as nox
does), so the pairing is visible in ``--help``; this module holds the defaults, the
cache layout, and the checks that need no network.

The cache directory defaults to ``./cache`` of the current directory (as tox keeps
``.tox/``): results belong with the project whose recipes produced them. Override it
with ``--cache-dir`` or ``ENVBISECT_CACHE_DIR``.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envbisect.errors import CacheError, ConfigError, first_line
from envbisect.plainfile import what_is
from envbisect.redact import redact

if TYPE_CHECKING:
    from envbisect.index import IndexConfig

CACHE_ENV = "ENVBISECT_CACHE_DIR"
#: envbisect's own ``ENVBISECT_*`` settings: they change how envbisect works, not what a
#: recipe computes, so they are left out of the probe key (every other ``ENVBISECT_*``
#: variable is in it; see :func:`envbisect.probekey.env_values`).
OWN_VARIABLES = frozenset({CACHE_ENV, "ENVBISECT_PYTHON", "ENVBISECT_INSTALLER", "ENVBISECT_DOWNLOAD_PYTHON",
                           "ENVBISECT_RESULT", "ENVBISECT_OUTPUTS", "ENVBISECT_SCHEDULER", "ENVBISECT_DEBUG",
                           "ENVBISECT_PREFETCH", "ENVBISECT_SECRETS_FD",
                           "ENVBISECT_JOBS", "ENVBISECT_EXECUTOR", "ENVBISECT_SAMPLE", "ENVBISECT_QUIET"})
DEFAULT_CACHE_DIR = Path("cache")
INSTALLERS = ("uv", "pip")
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class CachePaths:
    """Where everything lives under the cache directory."""

    root: Path

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv"

    @property
    def http(self) -> Path:
        return self.root / "index"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @property
    def db(self) -> Path:
        return self.root / "results.db"

    def usable(self) -> CachePaths:
        """These paths, when the root is a directory or not there yet; :class:`CacheError`
        naming what is there instead (a file, a FIFO, a dangling link) otherwise."""
        if os.path.lexists(self.root) and not self.root.is_dir():
            raise CacheError(f"cache directory {self.root} {what_is(self.root)}, not a directory; "
                             f"pass --cache-dir or set {CACHE_ENV} to a directory")
        return self

    def ensure(self) -> CachePaths:
        """Create the directories; :class:`CacheError` when the location is not writable."""
        self.usable()
        try:
            for d in (self.root, self.envs, self.uv_cache, self.http, self.logs, self.scratch):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise CacheError(
                f"cache directory {self.root} is not writable ({exc.strerror or exc}); "
                f"pass --cache-dir or set {CACHE_ENV} to a writable directory"
            ) from exc
        return self


def dask_address_problem(scheduler: str) -> str | None:
    """Why ``scheduler`` is no Dask scheduler address (an unknown scheme, no port), or None
    (also without Dask installed: the executor says that when it starts). Checked before
    any run or client exists: a Dask client that fails on a malformed address in its
    constructor lingers until exit, where it printed a traceback after waiting 20 s."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:
        return None
    try:
        scheme, location = parse_address(scheduler, strict=False)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError as exc:
        return first_line(exc)
    return None


def _default_index() -> IndexConfig:
    # Imported here: the index module pulls in requests, and the CLI reads this module's
    # names at start-up (`bisect --help` must stay fast).
    from envbisect.index import IndexConfig

    return IndexConfig()


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    value = environ.get(CACHE_ENV)
    return Path(value) if value else DEFAULT_CACHE_DIR


@dataclass(frozen=True)
class Settings:
    """Everything a session needs besides the recipe and the search question."""

    cache: CachePaths
    index: IndexConfig = field(default_factory=lambda: _default_index())
    python: str | None = None
    installer: str = "uv"
    allow_build: bool = False
    reuse: bool = True
    #: Let uv download a missing ``--python`` interpreter (off: never silently).
    download_python: bool = False
    #: Environments built ahead while a probe runs (``--prefetch``; 0: none).
    prefetch: int = 2
    #: Probes run at once (``--jobs``): each search round probes this many candidates.
    jobs: int = 1
    #: Where recipes run: ``local`` (this machine) or ``dask`` (workers of ``scheduler``).
    executor: str = "local"
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; use one of: {', '.join(EXECUTORS)}")
        if self.executor == "dask" and not self.scheduler:
            raise ConfigError("--executor dask needs a scheduler: pass --scheduler tcp://HOST:8786 or set "
                              "ENVBISECT_SCHEDULER")
        if self.executor == "dask" and (problem := dask_address_problem(self.scheduler)) is not None:
            raise ConfigError(f"--scheduler {redact(self.scheduler)} is not a Dask scheduler address ({problem}); "
                              "write e.g. tcp://HOST:8786 (--scheduler or ENVBISECT_SCHEDULER)")
        if self.installer not in INSTALLERS:
            raise ConfigError(
                f"unknown installer {self.installer!r}; use one of: {', '.join(INSTALLERS)}"
            )


def host_info(python_version: str | None = None) -> dict[str, str]:
    """What reports print about the host (never its name: reports get pasted into issues,
    and probes are matched by fingerprint, see :mod:`envbisect.host`)."""
    return {
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": python_version or platform.python_version(),
    }
