"""The installers' side: which uv, which interpreter, and the environment they run in.

Shared by :mod:`envbisect.plan` (resolving) and :mod:`envbisect.envs` (building). The
installers see index settings only from envbisect's own recorded configuration: stray
``UV_*``/``PIP_*`` variables and config files would change *what* gets installed behind
the recorded settings' back. Interpreters are never downloaded unless the user asked
(``--download-python``): a bisection must not fetch and run a binary nobody chose.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from envbisect import procs
from envbisect.errors import ConfigError
from envbisect.index import IndexConfig
from envbisect.plainfile import what_is
from envbisect.printable import printable
from envbisect.redact import redact

_REASON_MAX = 600

#: uv settings about *how* to talk to the network, which a user may need on their machine;
#: every other ``UV_*`` variable (indexes, exclude-newer, resolution strategy, ...) would
#: change *what* gets installed behind the recorded settings' back, so it is dropped.
_KEEP_UV = frozenset({"UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_CONCURRENT_DOWNLOADS", "UV_KEYRING_PROVIDER",
                      "UV_INSECURE_HOST", "UV_HTTP_RETRIES"})


_UV_LOCK = threading.Lock()
_UV: list[str] = []


def uv_bin() -> str:
    """The uv executable that ships with the installed ``uv`` package, found once per process
    under a lock: ``find_uv_bin`` reads ``sysconfig``, whose first use is not thread-safe on
    Python 3.11 (CPython gh-92452: a second thread may see ``EXE`` as None, and a Dask
    worker's first probes, started side by side, failed with a TypeError)."""
    with _UV_LOCK:
        if not _UV:
            from uv import find_uv_bin

            _UV.append(find_uv_bin())
        return _UV[0]


def installer_environ(cache: Path | None, index: IndexConfig | None = None, *,
                      installer: str = "uv") -> dict[str, str]:
    """The installers' environment: index settings come only from envbisect's own
    (recorded) configuration ``index``, never from ``UV_*``/``PIP_*`` variables or config
    files, and reach the installer here, not on its command line (credentials in argv are
    visible to every local user)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV", "CONDA_PREFIX")) or k in _KEEP_UV}
    if index is not None:
        env.update(index.installer_env(installer))
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_CONFIG"] = "1"          # a stray uv.toml must not change what gets installed
    env["UV_NO_PROGRESS"] = "1"
    env["PIP_CONFIG_FILE"] = os.devnull  # the pip backend ignores pip.conf, as uv does
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if cache is not None:
        env["UV_CACHE_DIR"] = str(cache)
    return env


def install_reason(stderr: str) -> str:
    """Condense an installer's error output to the lines a user needs, kept printable (it
    may quote what an index served: a name, a metadata line; :mod:`envbisect.printable`)."""
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.lstrip().startswith(("Using ", "Resolved ", "Prepared ",
                                                              "Installed ", "Audited ", "warning: The `--pylock`"))]
    text = " ".join(ln.strip() for ln in (keep or lines)[-8:])
    return redact(printable(text))[:_REASON_MAX] or "installer failed without a message"


def run_tool(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run an installer command, capturing its output as text; never raises on failure.
    The installer dies with envbisect (:func:`envbisect.procs.run`): a kill -9 of envbisect
    must not leave a uv writing into a build directory the next run sweeps."""
    return procs.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)


@dataclass(frozen=True)
class Interpreter:
    """A Python that environments are built from: its path, version and implementation."""

    path: str
    version: str
    implementation: str = "cpython"


_DESCRIBE = "import platform, sys; print(platform.python_version(), sys.implementation.name)"


def find_interpreter(request: str | None, *, download: bool = False) -> Interpreter:
    """Resolve ``--python`` (``None``: the interpreter running envbisect; ``X.Y`` or a path:
    an interpreter already installed, found by uv). Interpreters are downloaded only when
    the user asked for it (``download``, from ``--download-python``)."""
    if request is None:
        return Interpreter(getattr(sys, "_base_executable", sys.executable) or sys.executable,
                           platform.python_version(), sys.implementation.name)
    env = installer_environ(None)
    find = [uv_bin(), "python", "find", "--no-python-downloads", request]
    proc = run_tool(find, env)
    if proc.returncode != 0 and download:
        env["UV_PYTHON_DOWNLOADS"] = "automatic"
        run_tool([uv_bin(), "python", "install", request], env)
        proc = run_tool(find, env)
    path = proc.stdout.strip()
    if (proc.returncode != 0 or not path) and (os.sep in request or request.startswith((".", "~"))):
        given = Path(request).expanduser()
        why = "is no Python interpreter uv can use" if given.is_file() else what_is(given)
        raise ConfigError(f"--python {request} {why}; pass the path of a python executable, or a version such as 3.11")
    if proc.returncode != 0 or not path:
        raise ConfigError(
            f"no Python {request} interpreter found on this machine; install it "
            f"(e.g. `uv python install {request}`), pass --download-python, or pass another --python"
        )
    out = procs.run([path, "-c", _DESCRIBE], capture_output=True, text=True, check=False)
    version, _, implementation = out.stdout.strip().partition(" ")
    return Interpreter(path, version or request, implementation or "cpython")
