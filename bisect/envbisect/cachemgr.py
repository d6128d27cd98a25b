"""``bisect cache``: what the cache directory holds, pruning to a size, clearing.

Sizes count each hardlinked file once (:mod:`envbisect.cacheusage`). ``prune`` removes
leftover scratch directories, then least-recently-used environments, then the installer
cache (with the empty venv builds copy, :mod:`envbisect.venvtemplate`) when environments
alone cannot reach the size, and reports each. Environments are
evicted through :class:`envbisect.envcache.EnvCache`, which never removes one that a live
process has marked in use. The results database is kept by ``clear`` unless asked: it is
the record of every probe. ``info`` only reads: it never creates the cache directory.
"""

from __future__ import annotations

import re
import shutil

from envbisect import cacheusage, outputs, procs
from envbisect.config import CachePaths
from envbisect.envcache import EnvCache
from envbisect.errors import ConfigError, DiskFull
from envbisect.installer import uv_bin
from envbisect.runner import SCRATCH_PREFIX

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4, "TB": 1024**4, "TIB": 1024**4}


def parse_size(text: str) -> int:
    """``'2GB'``, ``'500 MiB'``, ``'0'`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise ConfigError(f"--max-size {text!r} is not a size; use e.g. 2GB, 500MB or 0")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def cache_info(paths: CachePaths) -> dict:
    """Counts and sizes of each part; every size counts a hardlinked file once (the parts
    share files, so they add up to more than ``total_size``). Reads only."""
    envs = EnvCache(paths.envs).entries(sizes=False)
    usage = cacheusage.scan(paths.root)
    kept, kept_bytes = outputs.usage(outputs.store_root(paths.root))
    return {
        "cache_dir": str(paths.root),
        "exists": paths.root.is_dir(),
        "environments": len(envs),
        "environments_in_use": sum(e.in_use for e in envs),
        "environments_size": human(usage.size_of("env")),
        "installer_cache_size": human(usage.size_of("uv")),
        "index_cache_size": human(usage.size_of("index")),
        "logs_size": human(usage.size_of("logs")),
        "scratch_size": human(usage.size_of("scratch")),
        "outputs": kept,
        "outputs_size": human(kept_bytes),
        "database": str(paths.db),
        "database_size": human(usage.size_of("results")),
        "total_size": human(usage.total),
    }


def prune(paths: CachePaths, max_bytes: int) -> dict:
    """Bring the cache directory within ``max_bytes`` (each hardlinked file once): leftover
    scratch and half-built directories of dead processes and outputs of runs no longer
    recorded go first, then the plan of :func:`cacheusage.plan`. Returns what was removed and the sizes before and after."""
    before = cacheusage.scan(paths.root).total
    leftovers = sweep(paths)
    prune_outputs(paths)  # outputs no recorded probe names any more (none once the database is gone)
    cache = EnvCache(paths.envs)
    entries = {e.key: e for e in cache.entries(sizes=False)}
    usage = cacheusage.scan(paths.root)
    chosen = cacheusage.plan(usage, [k for k, e in entries.items() if not e.in_use], max_bytes)
    removed = [key for key in chosen.envs if cache.remove(entries[key])]
    if chosen.clean_uv:
        if paths.uv_cache.is_dir():
            clean_uv_cache(paths)
        cache.remove_templates()
    after = cacheusage.scan(paths.root)
    return {"max_bytes": max_bytes, "size_before": before, "size_after": after.total, "fits": after.total <= max_bytes,
            "leftovers_removed": leftovers, "environments_removed": removed,
            "environments_kept_in_use": sorted(k for k, e in entries.items() if e.in_use),
            "installer_cache_cleaned": chosen.clean_uv, "database_size": after.size_of("results")}


def clean_uv_cache(paths: CachePaths) -> None:
    """Empty the installer cache with uv itself (it knows its own locks and layout)."""
    proc = procs.run([uv_bin(), "cache", "clean", "--cache-dir", str(paths.uv_cache)], capture_output=True,
                     text=True, check=False)
    if proc.returncode != 0:  # an older uv or a stale lock: the directory is ours to empty
        shutil.rmtree(paths.uv_cache, ignore_errors=True)


def prune_outputs(paths: CachePaths) -> tuple[int, int]:
    """Remove the outputs (:mod:`envbisect.outputs`) of runs no longer recorded; (files, bytes)."""
    from envbisect.store import Store

    keep: set[str] = set()
    if paths.db.exists():
        with Store(paths.db) as store:
            keep = store.output_hashes()
    return outputs.prune(outputs.store_root(paths.root), keep)


def sweep(paths: CachePaths, *, wait: bool = True) -> int:
    """Remove what killed processes left behind: probe scratch directories and half-built
    environments whose creator (pid and start time in the name) is gone; never those of
    a live process. Done at the start of every run (``wait=False``: a build directory
    whose key is locked is left to its builder) and by ``bisect cache prune``. Returns
    how many directories went; an error removing one is not an error of the run."""
    removed = len(procs.sweep_dirs(paths.scratch, SCRATCH_PREFIX))
    if paths.envs.is_dir():
        try:
            removed += EnvCache(paths.envs).sweep_temporaries(wait=wait)
        except OSError:
            pass
    return removed


def clear(paths: CachePaths, *, keep_results: bool = True) -> list[str]:
    """Remove every environment not in use, the installer and index caches and the logs."""
    removed = []
    cache = EnvCache(paths.envs)
    kept = [e for e in cache.entries(sizes=False) if not cache.remove(e)]
    cache.remove_templates()
    cache.sweep_temporaries()
    removed.append(f"environments ({len(kept)} in use kept)" if kept else "environments")
    for name, path in (("installer cache", paths.uv_cache), ("index cache", paths.http),
                       ("logs", paths.logs), ("scratch", paths.scratch)):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    if not keep_results:
        shutil.rmtree(outputs.store_root(paths.root), ignore_errors=True)
        for suffix in ("", "-wal", "-shm"):
            db = paths.db.with_name(paths.db.name + suffix)
            if db.exists():
                db.unlink()
        removed.append("results database")
    return removed


def disk_full(paths: CachePaths, cause: str) -> DiskFull:
    """The one-line error for a full disk: where, how much is free, and how much a run
    needs (the largest environment in the cache, the best estimate of the next one)."""
    try:
        free = shutil.disk_usage(paths.root).free
    except OSError:
        free = 0
    sizes = [e.size for e in EnvCache(paths.envs).entries()] if paths.envs.is_dir() else []
    need = max(sizes, default=0) or 50 * 1024**2
    return DiskFull(f"no space left for the cache directory {paths.root} ({human(free)} free, a run needs about "
                    f"{human(need)} more for the next environment and its logs; {cause}): free some space "
                    "(`bisect cache prune --max-size ...`) or pass --cache-dir on another disk, then run the same "
                    "command again to resume; nothing recorded was lost")
