"""Content-addressed virtual environments, built atomically and shared safely.

An :class:`EnvSpec` (interpreter, requirement pins, index settings, optional
``exclude_newer`` date, host platform, installer) hashes to a key; the environment lives
in ``<cache>/envs/<key>``. A build happens in a temporary directory beside the target
(``.tmp-<key>-…``) and is renamed into place only once the install and the ``freeze``
both succeeded, so a directory named by its key is always complete: a build killed
half-way leaves only a temporary directory, which is never used and is swept away by the
next build of that key. A per-key file lock makes two processes that need the same
environment wait for each other rather than build it twice.

The default backend is uv (``uv venv --relocatable`` + ``uv pip install``), with its
cache inside the envbisect cache so installs hardlink; ``--installer pip`` uses
virtualenv + pip instead (slower, for hosts where uv cannot run). Interpreters are never
downloaded: ``--python X.Y`` must name an interpreter already on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock

from envbisect.config import CachePaths
from envbisect.errors import ConfigError, InstallFailed
from envbisect.index import IndexConfig, redact

MARKER = "envbisect-env.json"
IN_USE = ".envbisect-in-use"
_REASON_MAX = 600


def uv_bin() -> str:
    """The uv executable that ships with the installed ``uv`` package."""
    from uv import find_uv_bin

    return find_uv_bin()


def host_platform() -> str:
    return f"{sys.platform}-{platform.machine()}"


def bin_dir(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin")


def env_python(env: Path) -> Path:
    return bin_dir(env) / ("python.exe" if os.name == "nt" else "python")


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str


def find_interpreter(request: str | None, *, download: bool = False) -> Interpreter:
    """Resolve ``--python`` (``None``: the interpreter running envbisect; ``X.Y`` or a path:
    an interpreter already installed, found by uv). Interpreters are downloaded only when
    the user asked for it (``download``, from ``--download-python``): a bisection must not
    fetch and run a binary nobody chose."""
    if request is None:
        return Interpreter(getattr(sys, "_base_executable", sys.executable) or sys.executable,
                           platform.python_version())
    env = installer_environ(None)
    find = [uv_bin(), "python", "find", "--no-python-downloads", request]
    proc = subprocess.run(find, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 and download:
        env["UV_PYTHON_DOWNLOADS"] = "automatic"
        subprocess.run([uv_bin(), "python", "install", request], capture_output=True, text=True,
                       env=env, check=False)
        proc = subprocess.run(find, capture_output=True, text=True, env=env, check=False)
    path = proc.stdout.strip()
    if proc.returncode != 0 or not path:
        raise ConfigError(
            f"no Python {request} interpreter found on this machine; install it "
            f"(e.g. `uv python install {request}`), pass --download-python, or pass another --python"
        )
    out = subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, check=False)
    return Interpreter(path, out.stdout.strip() or request)


@dataclass(frozen=True)
class EnvSpec:
    """Everything that determines an environment's contents; its key is a hash of it."""

    interpreter: Interpreter
    requirements: tuple[str, ...]
    index: IndexConfig
    exclude_newer: str | None = None
    #: Per-package overrides of ``exclude_newer`` ("PKG=DATE"), e.g. so the bisected
    #: package's own later uploads stay visible while its dependencies are held back.
    exclude_newer_package: tuple[str, ...] = ()
    platform: str = host_platform()
    installer: str = "uv"
    allow_build: bool = False
    #: Install from uv's cache only (``--offline``): re-checking a recorded probe after
    #: its builds left the index. Not part of the key: it changes how, not what.
    offline: bool = False

    def canonical(self) -> dict:
        # The index part is redacted: a rotated password must not change the key, and
        # the canonical form is written into the env's marker file.
        return {
            "python": self.interpreter.version,
            "python_path": self.interpreter.path,
            "requirements": sorted(self.requirements),
            "index": self.index.redacted(),
            "exclude_newer": self.exclude_newer,
            "exclude_newer_package": sorted(self.exclude_newer_package),
            "platform": self.platform,
            "installer": self.installer,
            "allow_build": self.allow_build,
        }

    @property
    def key(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class Env:
    key: str
    path: Path
    resolved: dict[str, str]
    build_s: float
    reused: bool

    @property
    def python(self) -> Path:
        return env_python(self.path)


#: uv settings about *how* to talk to the network, which a user may need on their machine;
#: every other ``UV_*`` variable (indexes, exclude-newer, resolution strategy, ...) would
#: change *what* gets installed behind the recorded settings' back, so it is dropped.
_KEEP_UV = frozenset({"UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_CONCURRENT_DOWNLOADS", "UV_KEYRING_PROVIDER",
                      "UV_INSECURE_HOST", "UV_HTTP_RETRIES"})


def installer_environ(cache: Path | None) -> dict[str, str]:
    """The installers' environment: index settings come only from envbisect's own
    (recorded) configuration, never from ``UV_*``/``PIP_*`` variables or config files."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV", "CONDA_PREFIX")) or k in _KEEP_UV}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_CONFIG"] = "1"          # a stray uv.toml must not change what gets installed
    env["UV_NO_PROGRESS"] = "1"
    env["PIP_CONFIG_FILE"] = os.devnull  # the pip backend ignores pip.conf, as uv does
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if cache is not None:
        env["UV_CACHE_DIR"] = str(cache)
    return env


def install_reason(stderr: str) -> str:
    """Condense an installer's error output to the lines a user needs."""
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.lstrip().startswith(("Using ", "Resolved ", "Prepared ",
                                                              "Installed ", "Audited "))]
    text = " ".join(ln.strip() for ln in (keep or lines)[-8:])
    return redact(text)[:_REASON_MAX] or "installer failed without a message"


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)


class EnvManager:
    """Builds, finds, marks in-use and evicts environments under ``<cache>/envs``."""

    def __init__(self, paths: CachePaths) -> None:
        self.paths = paths
        self.root = paths.envs
        self.locks = self.root / ".locks"

    def path_for(self, spec: EnvSpec) -> Path:
        return self.root / spec.key

    def lookup(self, spec: EnvSpec) -> Env | None:
        """The finished environment for ``spec``, if one exists (no lock needed: a keyed
        directory only ever appears through an atomic rename of a complete build)."""
        return self.lookup_key(spec.key)

    def lookup_key(self, key: str) -> Env | None:
        """The finished environment stored under ``key`` (a probe's ``env_key``), if any."""
        path = self.root / key
        marker = path / MARKER
        if not marker.is_file():
            return None
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        return Env(key, path, data.get("resolved", {}), 0.0, True)

    def ensure(self, spec: EnvSpec) -> Env:
        """Return the environment for ``spec``, building it if needed.

        Raises :class:`InstallFailed` with the installer's reason when the requirements
        cannot be resolved or installed on this host (an untestable candidate)."""
        found = self.lookup(spec)
        if found is not None:
            return found
        self.locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.locks / f"{spec.key}.lock")):
            found = self.lookup(spec)  # another process built it while we waited
            if found is not None:
                return found
            return self._build(spec)

    def _build(self, spec: EnvSpec) -> Env:
        for stale in self.root.glob(f".tmp-{spec.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".tmp-{spec.key}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        try:
            resolved = self._install(spec, tmp)
            marker = dict(spec.canonical(), resolved=resolved, key=spec.key,
                          built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
            os.replace(tmp, self.path_for(spec))
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return Env(spec.key, self.path_for(spec), resolved, time.perf_counter() - start, False)

    def _install(self, spec: EnvSpec, tmp: Path) -> dict[str, str]:
        env = installer_environ(self.paths.uv_cache)
        cwd = self.root
        if spec.installer == "uv":
            uv = uv_bin()
            steps = [[uv, "venv", "--quiet", "--relocatable", "--python", spec.interpreter.path, str(tmp)]]
            install = [uv, "pip", "install", "--python", str(env_python(tmp)), *spec.index.uv_args()]
            if not spec.allow_build:
                install.append("--no-build")
            if spec.exclude_newer:
                install += ["--exclude-newer", spec.exclude_newer]
            for item in spec.exclude_newer_package:
                install += ["--exclude-newer-package", item]
            if spec.offline:
                install.append("--offline")
            steps.append(install + list(spec.requirements))
            freeze = [uv, "pip", "freeze", "--python", str(env_python(tmp))]
        else:
            steps = [[sys.executable, "-m", "virtualenv", "--quiet", "--python", spec.interpreter.path, str(tmp)]]
            install = [str(env_python(tmp)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                       *spec.index.pip_args()]
            if not spec.allow_build:
                install += ["--only-binary", ":all:"]
            steps.append(install + list(spec.requirements))
            freeze = [str(env_python(tmp)), "-m", "pip", "freeze", "--all"]
        for cmd in steps:
            proc = _run(cmd, env, cwd)
            if proc.returncode != 0:
                raise InstallFailed(install_reason(proc.stderr or proc.stdout))
        proc = _run(freeze, env, cwd)
        if proc.returncode != 0:
            raise InstallFailed(install_reason(proc.stderr))
        return parse_freeze(proc.stdout)

    @contextmanager
    def in_use(self, env: Env) -> Iterator[Env]:
        """Mark ``env`` as used by this process (pruning skips it) and refresh its LRU time."""
        mark_dir = env.path / IN_USE
        mark_dir.mkdir(exist_ok=True)
        mark = mark_dir / str(os.getpid())
        mark.write_text("")
        try:
            os.utime(env.path / MARKER)
        except OSError:
            pass
        try:
            yield env
        finally:
            mark.unlink(missing_ok=True)


def parse_freeze(text: str) -> dict[str, str]:
    """``name==version`` lines (and ``name @ url``) into a name -> version mapping."""
    resolved: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" in line:
            name, _, ver = line.partition("==")
            resolved[name.strip().lower()] = ver.strip()
        elif " @ " in line:
            name, _, url = line.partition(" @ ")
            resolved[name.strip().lower()] = redact(url.strip())
    return resolved


# --- eviction ---------------------------------------------------------------------------


def dir_size(path: Path) -> int:
    """Bytes under ``path``, counting each hardlinked inode once (uv hardlinks from its
    cache, so apparent sizes would double-count)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class EnvEntry:
    key: str
    path: Path
    size: int
    last_used: float
    in_use: bool


class EnvCache:
    """Listing and least-recently-used eviction of built environments."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entries(self, *, sizes: bool = True) -> list[EnvEntry]:
        out = []
        if not self.root.is_dir():
            return out
        for path in self.root.iterdir():
            marker = path / MARKER
            if path.name.startswith(".") or not marker.is_file():
                continue
            users = [p for p in (path / IN_USE).glob("*") if p.name.isdigit()]
            in_use = any(_pid_alive(int(p.name)) for p in users)
            out.append(EnvEntry(path.name, path, dir_size(path) if sizes else 0,
                                marker.stat().st_mtime, in_use))
        return sorted(out, key=lambda e: e.last_used)

    def remove(self, entry: EnvEntry) -> bool:
        """Delete one environment unless a live process uses it; the per-key lock keeps a
        concurrent build of the same key out while it goes."""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{entry.key}.lock")):
            users = [p for p in (entry.path / IN_USE).glob("*") if p.name.isdigit()]
            if any(_pid_alive(int(p.name)) for p in users):
                return False
            trash = self.root / f".trash-{entry.key}-{uuid.uuid4().hex[:6]}"
            os.replace(entry.path, trash)  # atomic: the key vanishes at once
            shutil.rmtree(trash, ignore_errors=True)
        return True

    def sweep_temporaries(self) -> int:
        """Remove leftovers of builds that were killed half-way (their locks are free)."""
        removed = 0
        for tmp in list(self.root.glob(".tmp-*")) + list(self.root.glob(".trash-*")):
            key = tmp.name.split("-")[1]
            with FileLock(str(self.root / ".locks" / f"{key}.lock")):
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
                    removed += 1
        return removed

    def prune(self, max_bytes: int) -> tuple[list[EnvEntry], int]:
        """Evict least-recently-used environments until they fit in ``max_bytes``.
        Returns (removed entries, bytes left)."""
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        self.sweep_temporaries()
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for entry in entries:
            if total <= max_bytes:
                break
            if entry.in_use:
                continue
            if self.remove(entry):
                removed.append(entry)
                total -= entry.size
        return removed, total
