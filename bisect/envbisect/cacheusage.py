"""What the cache directory takes on disk, counting each hardlinked file once, and
what ``cache prune --max-size`` must remove to fit.

uv installs by hardlinking from its cache, so an environment's files and the installer
cache's share inodes: adding apparent sizes counts them twice, and removing an
environment frees only the files nothing else links. :func:`scan` records every inode
under the cache once, with the *owners* that link it (``env:<key>``, ``uv``, ``index``,
``logs``, ``scratch``, ``results``, ``other``); :func:`plan` then finds the least a prune
must remove: least-recently-used environments first, and the installer cache as well only
when environments alone cannot reach the size. The walk does I/O; the plan is pure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envbisect.venvtemplate import PREFIX as TEMPLATE_PREFIX

#: Owner names of the parts of a cache directory (see config.CachePaths).
_PARTS = {"uv": "uv", "index": "index", "logs": "logs", "scratch": "scratch", "outputs": "outputs"}


@dataclass
class Usage:
    """Every inode under a cache directory once: (dev, ino) -> (bytes, owners)."""

    inodes: dict[tuple[int, int], tuple[int, frozenset[str]]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Bytes on disk, each hardlinked file counted once."""
        return sum(size for size, _ in self.inodes.values())

    def size_of(self, prefix: str) -> int:
        """Bytes of the inodes an owner starting with ``prefix`` links (each once)."""
        return sum(size for size, owners in self.inodes.values() if any(o.startswith(prefix) for o in owners))

    def freed(self, removed: set[str]) -> int:
        """Bytes that removing every owner in ``removed`` would free: the inodes linked
        by nothing else."""
        return sum(size for size, owners in self.inodes.values() if owners <= removed)


def owner_of(root: Path, path: Path) -> str:
    """Which part of the cache directory ``path`` belongs to."""
    rel = path.relative_to(root).parts
    if not rel:
        return "other"
    if rel[0] == "envs":
        if len(rel) > 2 and rel[1].startswith(f".{TEMPLATE_PREFIX}"):
            return "uv"  # the empty venv builds copy (envbisect.venvtemplate): installer scaffolding
        return f"env:{rel[1]}" if len(rel) > 2 and not rel[1].startswith(".") else "envs"
    if rel[0].startswith("results.db"):
        return "results"
    return _PARTS.get(rel[0], "other")


def scan(root: Path) -> Usage:
    """Walk the cache directory once (nothing is created; a missing one is empty)."""
    found: dict[tuple[int, int], list] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            entry = found.setdefault((st.st_dev, st.st_ino), [st.st_size, set()])
            entry[1].add(owner_of(root, path))
    return Usage({k: (size, frozenset(owners)) for k, (size, owners) in found.items()})


@dataclass(frozen=True)
class PrunePlan:
    """What a prune removes: these environments (oldest first), and the installer cache
    when ``clean_uv``; ``fits`` says whether the size is reached."""

    envs: tuple[str, ...]
    clean_uv: bool
    size_after: int
    fits: bool


def plan(usage: Usage, lru_envs: Sequence[str], max_bytes: int) -> PrunePlan:
    """The least to remove so the cache fits in ``max_bytes``: the shortest prefix of
    ``lru_envs`` (removable environment keys, least recently used first) that fits;
    only when none does, the installer cache too, with the shortest prefix that then fits."""
    total = usage.total
    for clean_uv in (False, True):
        removed = {"uv"} if clean_uv else set()
        for k in range(len(lru_envs) + 1):
            if k:
                removed.add(f"env:{lru_envs[k - 1]}")
            after = total - usage.freed(removed)
            if after <= max_bytes:
                return PrunePlan(tuple(lru_envs[:k]), clean_uv, after, True)
    return PrunePlan(tuple(lru_envs), True, total - usage.freed({"uv", *(f"env:{k}" for k in lru_envs)}), False)
