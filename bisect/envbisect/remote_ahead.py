"""Build ahead on Dask workers: the envs of the search's possible next round, built in a
worker's own cache while the current round's recipes run there.

Execution layer, the worker's half of ``--prefetch`` under ``--executor dask``. The
coordinator resolves each candidate the search may ask for next (as it does for local
prefetching) and hands the lock to one worker through Dask's ``client.run``, which calls
:func:`start` in the worker process outside the task system: it queues the build in a
small pool of threads there and returns at once, so it never takes a task slot from a
probe. The build is :func:`envbisect.executor.execute`'s own (same spec, same
content-addressed cache, same per-key build lock), run niced as a
:class:`~envbisect.procs.Background` job; the probe task that later needs that env finds
it ready, or waits on its build lock while it finishes. :func:`cancel` stops a build
whose candidate the search no longer needs (queued: dropped; running: its installer is
killed and the half-built env removed, never used).

What travels is a :class:`BuildAhead`: the lock text and how to install it (interpreter
request, installer, whether builds from source are allowed, the index without
credentials). As for probe tasks, a worker whose index needs credentials has them in its
own environment; no token, credential or database ever travels.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from envbisect import procs
from envbisect.errors import EnvbisectError
from envbisect.executor import public_index, spec_for, worker_workshop
from envbisect.index import IndexConfig
from envbisect.plan import Lock

#: Builds one worker process runs ahead at once; more wait in its queue.
WORKER_BUILDS = 4


@dataclass(frozen=True)
class BuildAhead:
    """One env to build ahead on a worker (picklable, credential-free)."""

    lock_text: str
    lock_hash: str
    python: str | None
    installer: str
    allow_build: bool
    index: IndexConfig


@dataclass
class _Queued:
    future: Future
    job: procs.Background


_POOL: ThreadPoolExecutor | None = None
_BUILDS: dict[str, _Queued] = {}
_GUARD = threading.Lock()


def start(hint: BuildAhead) -> bool:
    """Queue the build of ``hint`` in this worker process (what ``client.run`` calls);
    False when the same lock is already queued or building here."""
    global _POOL
    key = hint.lock_hash
    with _GUARD:
        if (known := _BUILDS.get(key)) is not None and not known.future.done():
            return False
        if _POOL is None:
            _POOL = ThreadPoolExecutor(WORKER_BUILDS, thread_name_prefix="envbisect-ahead")
        job = procs.Background()
        _BUILDS[key] = _Queued(_POOL.submit(_build, hint, job), job)
    return True


def cancel(*lock_hashes: str) -> int:
    """Stop the builds of these locks here (queued or running); how many there were."""
    with _GUARD:
        stopped = [q for h in lock_hashes if (q := _BUILDS.pop(h, None)) is not None]
    for queued in stopped:
        queued.future.cancel()
        queued.job.cancel()
    return len(stopped)


def _build(hint: BuildAhead, job: procs.Background) -> bool:
    """Build the env in this worker's cache; True when it exists afterwards. Failures are
    silent: the probe that needs the env meets the same failure itself and records it."""
    try:
        with job.running():
            shop = worker_workshop(hint.python, hint.index)
            shop.envs.ensure(spec_for(shop, hint.lock_text, hint.installer, hint.allow_build))
            return True
    except EnvbisectError:
        return False
    finally:
        with _GUARD:
            if (queued := _BUILDS.get(hint.lock_hash)) is not None and queued.job is job:
                del _BUILDS[hint.lock_hash]


def build_hint(settings, lock: Lock) -> BuildAhead:
    """What a worker needs to build ``lock`` as this run's probes would: the run's
    interpreter request, installer and source-build setting, and the index without
    credentials (``settings``: the session's :class:`~envbisect.session.Settings`)."""
    return BuildAhead(lock.text, lock.hash, settings.python, settings.installer, settings.allow_build,
                      public_index(settings.index))
