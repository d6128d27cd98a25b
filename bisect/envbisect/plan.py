"""Plan a probe: resolve a candidate's requirements into an exact lock, before any install.

A probe's verdict is only as good as the identity of what was installed. The unpinned
requirement strings (``tensorflow==2.16.1``, ``numpy``) say nothing about what ``numpy``
was on the day; the lock does. :class:`Planner` asks uv to resolve the requirements for
the env's interpreter into a PEP 751 ``pylock.toml`` (every distribution pinned, with the
exact file URL and sha256), and :class:`Lock` is that text plus its canonical form:
``name==version`` with the hashes of its files, hashed into :attr:`Lock.hash`. The file
URLs are left out of the hash (a mirror or a loopback port serving the same bytes is the
same environment); a file re-uploaded under the same version has another sha256, so its
lock differs.

Why resolve against fresh pages: envbisect revalidates its own listing of the index
(:mod:`envbisect.index`), but uv keeps its own cache of project pages, which may be days
old. A :class:`Planner` therefore has uv revalidate (``--refresh-package``; an unchanged
page costs a 304) every package the first time one of its resolves involves it: the
requirement names before the resolve, and any package the lock pins that was not
refreshed yet in a second pass. Every page a lock is built from is thus at least as new
as the planner (created after envbisect's own listing), and a release that envbisect
listed is never missing from uv's view; later resolves of the same run reuse the pages
without asking again (a run resolves as of its fixed snapshot anyway). Resolves side by
side (a round's candidates and the builds ahead, a dozen at once with ``--jobs 3``) do not
each force a fresh copy of the same page: one claims it, the others wait for that resolve
and then use uv's copy as its cache headers allow (at most a 304 each; before, a cold
``--jobs 3`` start fetched the page whole more than once). The lock's file
URLs mean the install step needs no project page at all.

Three endings: a :class:`Lock`; :class:`Unresolvable` (the resolver's reason: the
candidate is untestable, at the cost of a resolve); or :class:`~envbisect.errors.IndexUnreachable`
raised when the index could not be reached (an outage stops the run, it is never a
verdict on a candidate).
"""

from __future__ import annotations

import threading

import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envbisect import procs
from envbisect.errors import DiskFull, IndexUnreachable
from envbisect.installer import install_reason, installer_environ, uv_bin
from envbisect.index import IndexConfig
from envbisect.redact import redact

#: Installer messages that mean "the network or the index failed", not "this candidate
#: cannot be installed": uv's connection errors, DNS, timeouts, 5xx after its retries.
_OUTAGE = re.compile(
    r"connection refused|error sending request|request failed after \d+ retr|dns error|"
    r"failed to lookup address|name or service not known|network is unreachable|connection reset|"
    r"operation timed out|timed out after|server error \(5\d\d|\b50[0234] (internal server error|"
    r"bad gateway|service unavailable|gateway timeout)|tcp connect error",
    re.IGNORECASE,
)


#: Installer messages that mean the disk is full (never a verdict on a candidate either).
_DISK_FULL = re.compile(r"no space left on device|os error 28|disk quota exceeded|database or disk is full",
                        re.IGNORECASE)


def check_disk_full(message: str) -> None:
    """Raise :class:`DiskFull` when an installer's message says the disk is full; the run
    driver turns it into one line naming the cache directory and the space it needs."""
    if _DISK_FULL.search(message):
        raise DiskFull(f"no space left on device ({install_reason(message)[:160]})")


def failure_reason(message: str, index: IndexConfig) -> str:
    """An installer's failure: raise when it is the disk or the index (never a verdict),
    else return the condensed reason that makes the candidate untestable."""
    check_disk_full(message)
    if is_outage(message):
        raise outage(message, index)
    return install_reason(message)


def is_outage(message: str) -> bool:
    """Whether an installer's error text says the index/network failed (see :data:`_OUTAGE`)."""
    return bool(_OUTAGE.search(message))


def outage(message: str, index: IndexConfig) -> IndexUnreachable:
    """The one-line error that stops a run when the index went away mid-run."""
    where = redact(index.index_url)
    return IndexUnreachable(
        f"the package index {where} stopped answering ({install_reason(message)[:200]}); "
        "the run is interrupted, nothing was recorded for this candidate: run the same command again "
        "once the index is reachable to resume"
    )


@dataclass(frozen=True)
class Pin:
    """One locked distribution: name, version and the sha256 of each of its files."""

    name: str
    version: str
    hashes: tuple[str, ...]

    def requirement(self) -> str:
        """``name==version --hash=sha256:…`` (for pip's ``--require-hashes``)."""
        return " ".join([f"{self.name}=={self.version}", *(f"--hash=sha256:{h}" for h in self.hashes)])


@dataclass(frozen=True)
class Lock:
    """An exact resolution: the ``pylock.toml`` text uv wrote and its canonical pins."""

    text: str
    pins: tuple[Pin, ...]

    @property
    def hash(self) -> str:
        """Hash of the canonical pins (names, versions, file hashes; not the URLs)."""
        canon = [[p.name, p.version, list(p.hashes)] for p in self.pins]
        return hashlib.sha256(json.dumps(canon).encode()).hexdigest()[:20]

    @property
    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.pins}

    @classmethod
    def from_text(cls, text: str) -> Lock:
        """Parse a ``pylock.toml``; :class:`ValueError` when it is not one."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not a pylock.toml: {exc}") from exc
        pins = []
        for package in data.get("packages") or []:
            files = [*(package.get("wheels") or []), *([package["sdist"]] if package.get("sdist") else [])]
            hashes = tuple(sorted(str(f.get("hashes", {}).get("sha256", "")) for f in files))
            pins.append(Pin(canonicalize_name(package["name"]), str(package.get("version", "")), hashes))
        return cls(text, tuple(sorted(pins, key=lambda p: p.name)))


def _names(requirements) -> list[str]:
    """The project names of requirement strings (unparsable ones are left to the resolver)."""
    out = []
    for text in requirements:
        try:
            out.append(Requirement(text).name)
        except InvalidRequirement:
            continue
    return out


@dataclass(frozen=True)
class Unresolvable:
    """The resolver's answer when no set of distributions satisfies the requirements."""

    reason: str


@dataclass(frozen=True)
class Cutoff:
    """``--exclude-newer`` for a resolve: the run's snapshot, a candidate's upload time
    (``--deps as-of-release``) or a date instant, with per-package exemptions."""

    exclude_newer: str | None = None
    exclude_newer_package: tuple[str, ...] = ()

    def args(self) -> list[str]:
        args = ["--exclude-newer", self.exclude_newer] if self.exclude_newer else []
        for item in self.exclude_newer_package:
            args += ["--exclude-newer-package", item]
        return args


#: The per-package override that keeps a package's later uploads visible under a cutoff.
FAR_FUTURE = "2100-01-01T00:00:00Z"


def iso(moment: datetime) -> str:
    """A cutoff as uv takes it: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_of(upload_time: datetime) -> str:
    """The ``--exclude-newer`` cutoff that still includes a file uploaded at ``upload_time``."""
    return iso(upload_time + timedelta(seconds=1))


def keep_visible(names: Iterable[str]) -> tuple[str, ...]:
    """``--exclude-newer-package`` values that exempt ``names`` from the cutoff."""
    return tuple(f"{n}={FAR_FUTURE}" for n in sorted({canonicalize_name(n) for n in names}))


class Planner:
    """Resolves requirement lists into locks for one interpreter and one index view."""

    def __init__(self, python: str, index: IndexConfig, uv_cache: Path, *, allow_build: bool = False) -> None:
        self.python = python
        self.index = index
        self.uv_cache = uv_cache
        self.allow_build = allow_build
        #: How many resolves this planner ran (the benchmark and fail-fast tests read it).
        self.resolves = 0
        #: Packages whose pages uv revalidated for this planner (see the module docstring).
        self.fresh: set[str] = set()
        #: Locks this planner made, by requirements and cutoff: a candidate resolved ahead
        #: (prefetch, in a thread) is not resolved again when its probe starts.
        self._made: dict[tuple, Lock] = {}
        #: One mutex per requirements and cutoff: a second thread asking for a lock that is
        #: being resolved waits for that resolve instead of running the same one beside it.
        self._resolving: dict[tuple, threading.Lock] = {}
        self._guard = threading.Condition()
        #: Packages a resolve is revalidating now (:meth:`_claim`; waited for on ``_guard``).
        self._refreshing: set[str] = set()

    def lock(self, requirements: list[str] | tuple[str, ...], cutoff: Cutoff = Cutoff()) -> Lock | Unresolvable:
        """Resolve ``requirements`` as of ``cutoff`` (see the module docstring)."""
        memo = (tuple(requirements), cutoff)
        with self._guard:
            mutex = self._resolving.setdefault(memo, threading.Lock())
        with mutex:
            if (made := self._made.get(memo)) is not None:
                return made
            return self._lock(memo)

    def _lock(self, memo: tuple) -> Lock | Unresolvable:
        requirements, cutoff = memo
        names = {canonicalize_name(n) for n in _names(requirements)}
        result = self._refreshing_compile(requirements, cutoff, names)
        if not isinstance(result, Lock):
            return result
        if (pinned := {p.name for p in result.pins}) - self.fresh:
            # a dependency seen for the first time: resolve again with its page revalidated
            result = self._refreshing_compile(requirements, cutoff, pinned)
            if not isinstance(result, Lock):
                return result
        self._made[memo] = result
        return result

    def _refreshing_compile(self, requirements, cutoff: Cutoff, names: set[str]) -> Lock | Unresolvable:
        """One resolve that revalidates those of ``names`` no resolve has revalidated yet;
        a failed (or killed) one revalidated nothing for sure, so they stay stale."""
        claim = self._claim(names)
        ok = False
        try:
            result = self._compile(requirements, cutoff, claim)
            ok = isinstance(result, Lock)
            return result
        finally:
            with self._guard:
                self._refreshing -= claim
                if ok:
                    self.fresh |= claim
                self._guard.notify_all()

    def _claim(self, names: set[str]) -> set[str]:
        """The packages of ``names`` this resolve is to revalidate: those not fresh yet, once
        no other resolve is revalidating any of them (it waits for that one; if it failed,
        the page is claimed here)."""
        with self._guard:
            while (names - self.fresh) & self._refreshing:
                self._guard.wait()
            claim = names - self.fresh
            self._refreshing |= claim
            return claim

    def _compile(self, requirements, cutoff: Cutoff, refresh: set[str]) -> Lock | Unresolvable:
        cmd = [uv_bin(), "pip", "compile", "-", "--format", "pylock.toml", "--python", self.python,
               "--quiet", "--no-header", *cutoff.args()]  # the indexes: in the environment
        for name in sorted(refresh):
            cmd += ["--refresh-package", name]
        if not self.allow_build:
            cmd.append("--no-build")
        self.resolves += 1
        proc = procs.run(cmd, input="\n".join(requirements) + "\n", capture_output=True, text=True,
                         env=installer_environ(self.uv_cache, self.index), check=False)
        if proc.returncode != 0:
            return Unresolvable(failure_reason(proc.stderr or proc.stdout, self.index))
        try:
            return Lock.from_text(proc.stdout)
        except ValueError as exc:
            return Unresolvable(f"the resolver wrote no lock ({exc})")
