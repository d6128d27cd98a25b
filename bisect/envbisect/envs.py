"""Content-addressed virtual environments, built atomically from a lock and shared safely.

An :class:`EnvSpec` (interpreter, the candidate's exact :class:`~envbisect.plan.Lock`,
platform, installer) hashes to a key; the environment lives in ``<cache>/envs/<key>``.
A build happens in a staging directory beside the target (``.tmp-stage<i>x<n>``, one of a
few slots per interpreter, each under a file lock while a build uses it; ``.tmp-<key>-…``
when all are busy) and is renamed into place only once the install and the package listing
both succeeded, so a directory named by its key is always complete: a build killed
half-way leaves only a staging directory, which is never used and is swept away by the
next build in that slot or the next run (a slot only while its lock is free, a
``.tmp-<key>-…`` only once the pid and start time its name carries are gone; the
installers die with envbisect, :mod:`envbisect.procs`).
A per-key file lock makes two processes that need the same environment wait for each
other rather than build it twice.

The default backend is uv (``uv venv --relocatable``, made once per interpreter and copied,
:mod:`envbisect.venvtemplate`, + ``uv pip sync pylock.toml``:
exactly the locked files, by URL and hash, so no project page is consulted), with its
cache inside the envbisect cache so installs hardlink; ``--installer pip`` uses
virtualenv + ``pip install --no-deps --require-hashes`` of the same pins instead. An
installer that cannot reach the index raises :class:`~envbisect.errors.IndexUnreachable`
(the run stops, resumable); any other failure is :class:`~envbisect.errors.InstallFailed`
(the candidate is untestable). Listing and eviction are :mod:`envbisect.envcache`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from packaging.utils import canonicalize_name

from envbisect import envguard, procs, sourcescan
from envbisect.config import CachePaths
from envbisect.errors import InstallFailed
from envbisect.index import IndexConfig
from envbisect.installer import Interpreter, install_reason, installer_environ, run_tool, uv_bin
from envbisect.venvtemplate import copy_empty_venv, template_tag
from envbisect.plan import Lock, failure_reason
from envbisect.redact import redact

MARKER = "envbisect-env.json"
LOCK_FILE = "pylock.toml"
IN_USE = ".envbisect-in-use"
#: Staging directories per base interpreter (:meth:`EnvManager._staging`): more than the
#: builds one run starts at once (``--prefetch`` 2 with ``--jobs 3``: 12 ahead + 3).
STAGE_SLOTS = 32


def host_platform() -> str:
    return f"{sys.platform}-{platform.machine()}"


def bin_dir(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin")


def env_python(env: Path) -> Path:
    return bin_dir(env) / ("python.exe" if os.name == "nt" else "python")


@dataclass(frozen=True)
class EnvSpec:
    """Everything that determines an environment's contents; its key is a hash of it.

    The key is interpreter (version and implementation) + platform + the lock's hash +
    installer: two candidates whose requirements resolve to the same distributions share
    one environment, and an environment is never reused once a dependency moved (its
    lock differs). The index is not part of the key: the lock names every file by hash.
    """

    interpreter: Interpreter
    lock: Lock
    index: IndexConfig
    platform: str = host_platform()
    installer: str = "uv"
    allow_build: bool = False
    #: Install from uv's cache only (``--offline``): re-checking a recorded probe after
    #: its builds left the index. Not part of the key: it changes how, not what.
    offline: bool = False

    def canonical(self) -> dict:
        return {"python": self.interpreter.version, "implementation": self.interpreter.implementation,
                "platform": self.platform, "lock": self.lock.hash, "installer": self.installer}

    @property
    def key(self) -> str:
        return env_key(**self.canonical())


def env_key(*, python: str, implementation: str, platform: str, lock: str, installer: str) -> str:
    """The key of an environment (see :class:`EnvSpec`), computable for another machine
    from what it reports of itself (:class:`envbisect.executor.Place`)."""
    canonical = {"python": python, "implementation": implementation, "platform": platform, "lock": lock,
                 "installer": installer}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Env:
    key: str
    path: Path
    resolved: dict[str, str]
    build_s: float
    reused: bool
    #: What the env's distributions were built from (:mod:`envbisect.sourceprobe`), read
    #: when it was built; None for an env an earlier envbisect built (its probe reads it).
    sources: dict | None = None
    #: The names in its site-packages and scripts directory when it was built
    #: (:mod:`envbisect.envguard`); None for an env an earlier envbisect built.
    entries: tuple[str, ...] | None = None

    @property
    def python(self) -> Path:
        return env_python(self.path)


class EnvManager:
    """Builds, finds and marks in-use environments under ``<cache>/envs``."""

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
        """The finished environment stored under ``key`` (a probe's ``env_key``), if any: not
        one that was changed after its build, which is tainted here so that the next build
        of its key replaces it (:mod:`envbisect.envguard`)."""
        path = self.root / key
        marker = path / MARKER
        if not marker.is_file() or envguard.is_tainted(path):
            return None
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        sources = data.get("sources")
        if not (isinstance(sources, dict) and isinstance(sources.get("dists"), dict)):
            sources = None  # an earlier envbisect's marker (or a damaged one): the probe reads the env
        listed = data.get("entries")
        listed = tuple(listed) if isinstance(listed, list) and all(isinstance(e, str) for e in listed) else None
        if (why := envguard.describe(listed, entries(path))) is not None:
            envguard.taint(path, why)
            return None
        return Env(key, path, data.get("resolved", {}), 0.0, True, sources, listed)

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
        if self.path_for(spec).exists():  # tainted (or its marker unreadable): moved aside, then removed
            aside = self.root / f".tmp-{spec.key}-{procs.owner_stamp()}-{uuid.uuid4().hex[:6]}"
            os.replace(self.path_for(spec), aside)
            shutil.rmtree(aside, ignore_errors=True)
        with self._staging(spec) as tmp:
            return self._build_in(spec, tmp)

    @contextmanager
    def _staging(self, spec: EnvSpec) -> Iterator[Path]:
        """Where a build happens before its rename into place: one of
        :data:`STAGE_SLOTS` staging directories per base interpreter, ``.tmp-stage<i>x<n>``,
        held under its own file lock for the whole build. A staging path comes back build
        after build, so uv's cached description of the interpreter at that path (uv asks
        a new venv's python for its paths and markers, about 0.04 CPU-seconds, the largest
        part of a small build) serves every build after the first; the venv is relocatable,
        so the rename is as safe as from a fresh name. What a killed build left there is
        removed by the next build in that slot, or swept under the slot's lock
        (:meth:`envbisect.envcache.EnvCache.sweep_temporaries`: never while a build holds
        it). With every slot busy, a fresh directory named after this process (pid and start time, which the
        sweep keeps while we run)."""
        tag = hashlib.sha256(spec.interpreter.path.encode()).hexdigest()[:8]
        for n in range(STAGE_SLOTS):
            name = f"stage{tag}x{n}"
            slot = FileLock(str(self.locks / f"{name}.lock"), timeout=0)
            try:
                slot.acquire()
            except Timeout:
                continue
            try:
                stage = self.root / f".tmp-{name}"
                shutil.rmtree(stage, ignore_errors=True)
                yield stage
            finally:
                slot.release()
            return
        yield self.root / f".tmp-{spec.key}-{procs.owner_stamp()}-{uuid.uuid4().hex[:6]}"

    def _build_in(self, spec: EnvSpec, tmp: Path) -> Env:
        start = time.perf_counter()
        try:
            resolved = self._install(spec, tmp)
            sources = built_from(tmp)
            listing = entries(tmp)
            marker = dict(spec.canonical(), resolved=resolved, key=spec.key, sources=sources, entries=listing,
                          built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
            os.replace(tmp, self.path_for(spec))
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return Env(spec.key, self.path_for(spec), resolved, time.perf_counter() - start, False, sources,
                   None if listing is None else tuple(listing))

    def _install(self, spec: EnvSpec, tmp: Path) -> dict[str, str]:
        """Create the venv in ``tmp`` and install exactly the lock into it; returns what
        ``pip list`` reports as installed. The lock is kept in the env (``pylock.toml``)."""
        env = installer_environ(self.paths.uv_cache, spec.index, installer=spec.installer)  # indexes too
        if spec.installer == "uv":
            uv, python = uv_bin(), str(env_python(tmp))
            try:
                copy_empty_venv(self.root, template_tag(spec.interpreter, uv), lambda path: self._step(
                    [uv, "venv", "--quiet", "--relocatable", "--python", spec.interpreter.path, str(path)], env, spec), tmp)
            except OSError as exc:  # the copy failed (a full disk, most likely): read as uv's own failure
                raise InstallFailed(failure_reason(f"copying the empty venv failed: {exc}", spec.index)) from exc
            (tmp / LOCK_FILE).write_text(spec.lock.text)
            sync = [uv, "pip", "sync", str(tmp / LOCK_FILE), "--python", python, "--preview-features", "pylock"]
            sync += [] if spec.allow_build else ["--no-build"]
            self._step(sync + (["--offline"] if spec.offline else []), env, spec)
            if (found := installed(tmp)) is not None:
                return found  # read here: one installer process less per env
            listing = [uv, "pip", "list", "--format", "json", "--python", python]
        else:
            python = str(env_python(tmp))
            self._step([sys.executable, "-m", "virtualenv", "--quiet", "--python", spec.interpreter.path, str(tmp)],
                       env, spec)
            (tmp / LOCK_FILE).write_text(spec.lock.text)
            reqs = tmp / "requirements.lock.txt"
            reqs.write_text("\n".join(p.requirement() for p in spec.lock.pins) + "\n")
            install = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                       "-r", str(reqs)]
            self._step(install + ([] if spec.allow_build else ["--only-binary", ":all:"]), env, spec)
            listing = [python, "-m", "pip", "list", "--format", "json"]
        proc = run_tool(listing, env, self.root)
        if proc.returncode != 0:
            raise InstallFailed(install_reason(proc.stderr))
        return parse_listing(proc.stdout)

    def _step(self, cmd: list[str], env: dict[str, str], spec: EnvSpec) -> None:
        """One installer command; an outage stops the run, any other failure makes the
        candidate untestable (:class:`InstallFailed`)."""
        proc = run_tool(cmd, env, self.root)
        if proc.returncode != 0:
            raise InstallFailed(failure_reason(proc.stderr or proc.stdout, spec.index))

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


def site_packages(root: Path) -> Path | None:
    """The one ``site-packages`` of the venv at ``root``; None when its layout is not one
    this knows."""
    sites = [*root.glob("lib/python*/site-packages"), *root.glob("Lib/site-packages")]
    return sites[0] if len(sites) == 1 else None


def entries(root: Path) -> list[str] | None:
    """The names in the env's site-packages and (as ``bin/NAME``) its scripts directory,
    sorted, without ``__pycache__`` (the interpreter writes it when a recipe imports a
    top-level module); None when the venv's layout is not one this knows
    (:mod:`envbisect.envguard`)."""
    if (site := site_packages(root)) is None:
        return None
    scripts = bin_dir(root)
    try:
        names = [n for n in os.listdir(site) if n != "__pycache__"]
        return sorted([*names, *(f"{scripts.name}/{n}" for n in os.listdir(scripts))])
    except OSError:
        return None


def installed(root: Path) -> dict[str, str] | None:
    """What a venv at ``root`` has installed (name -> version), read from its
    site-packages' ``.dist-info`` metadata as ``pip list`` reads it; None when the venv's
    layout is not one this knows (then the installer is asked)."""
    from importlib.metadata import distributions

    if (site := site_packages(root)) is None:
        return None
    found = {}
    for dist in distributions(path=[str(site)]):
        if name := dist.metadata["Name"]:
            found[canonicalize_name(name)] = redact(dist.version)
    return found


def built_from(root: Path) -> dict | None:
    """What the distributions of the venv at ``root`` were built from (``{"dists": ...}``,
    :mod:`envbisect.sourceprobe`), read in this process from its files: no interpreter
    start, and no probe pays for it. None when the layout is unknown or the read fails
    (the env is built all the same; its probe reads the sources itself)."""
    if (site := site_packages(root)) is None:
        return None
    try:
        return {"dists": sourcescan.scan([str(site)])}
    except Exception:  # noqa: BLE001 - never fails a build: "nothing known" is read later
        return None


def parse_listing(text: str) -> dict[str, str]:
    """``pip list --format json`` output (uv's or pip's) as a name -> version mapping."""
    try:
        rows = json.loads(text or "[]")
    except ValueError as exc:
        raise InstallFailed(f"the installer's package list is not JSON ({exc})") from exc
    return {canonicalize_name(str(r["name"])): redact(str(r["version"])) for r in rows
            if isinstance(r, dict) and "name" in r and "version" in r}
