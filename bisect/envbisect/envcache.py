"""Listing and least-recently-used eviction of the built environments under
``<cache>/envs`` (:mod:`envbisect.envs` builds them): sizes counted once per hardlinked
inode, an environment a live process marked in use never removed, each removal under the
key's build lock and atomic (renamed away, then deleted), and the leftovers of killed
builds and removals swept.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from envbisect import procs
from envbisect.envs import IN_USE, MARKER
from envbisect.venvtemplate import PREFIX as TEMPLATE_PREFIX, lock_path


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


def _used(path: Path) -> bool:
    """Whether a live process marked the environment at ``path`` as in use
    (:meth:`envbisect.envs.EnvManager.in_use`)."""
    return any(_pid_alive(int(p.name)) for p in (path / IN_USE).glob("*") if p.name.isdigit())


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
            out.append(EnvEntry(path.name, path, dir_size(path) if sizes else 0,
                                marker.stat().st_mtime, _used(path)))
        return sorted(out, key=lambda e: e.last_used)

    def remove(self, entry: EnvEntry) -> bool:
        """Delete one environment unless a live process uses it; the per-key lock keeps a
        concurrent build of the same key out while it goes."""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{entry.key}.lock")):
            if _used(entry.path):
                return False
            self._discard(entry.path, entry.key)
        return True

    def remove_templates(self) -> int:
        """Delete the empty-venv templates (:mod:`envbisect.venvtemplate`), each under its
        lock; the next build makes its template again."""
        removed = 0
        for path in sorted(self.root.glob(f".{TEMPLATE_PREFIX}*")) if self.root.is_dir() else []:
            tag = path.name[1:]
            with FileLock(str(lock_path(self.root, tag))):
                removed += self._discard(path, tag)
        return removed

    def _discard(self, path: Path, key: str) -> bool:
        """Rename ``path`` away (atomic: it vanishes at once), then delete it."""
        trash = self.root / f".trash-{key}-{uuid.uuid4().hex[:6]}"
        try:
            os.replace(path, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def sweep_temporaries(self, *, wait: bool = True) -> int:
        """Remove leftovers of builds and removals that were killed half-way.

        A build directory ``.tmp-<key>-<pid>-<start>-<random>`` is kept while the process
        it names runs (same pid *and* start time: :func:`envbisect.procs.is_leftover`); any
        other one (its builder died, or an older envbisect named it without a start time)
        and every ``.trash-<key>-…`` is removed under its key's lock, so never under a
        build of that key. Without ``wait`` (the sweep at the start of a run) a leftover
        whose lock is busy is skipped: that key's builder removes it itself."""
        removed = 0
        locks = self.root / ".locks"
        for tmp in list(self.root.glob(".tmp-*")) + list(self.root.glob(".trash-*")):
            key = tmp.name.split("-")[1]
            if procs.is_leftover(tmp.name, f".tmp-{key}-") is False:
                continue  # its builder is alive
            locks.mkdir(parents=True, exist_ok=True)
            try:
                with FileLock(str(locks / f"{key}.lock"), timeout=-1 if wait else 0):
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
                        removed += 1
            except Timeout:
                continue
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
