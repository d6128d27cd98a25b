"""The Dask executor (``--executor dask --scheduler tcp://HOST:8786``): each probe attempt
is a task on a worker of a Dask distributed cluster.

Execution layer, optional (``pip install 'envbisect[dask]'``; imported only when asked
for, so ``bisect --help`` stays fast and the base install stays small). A task is
:func:`envbisect.executor.execute_remote`: the worker builds the env from the task's lock
in its own cache and runs the recipe there. What travels is the task (recipe text, lock,
declared env values, timeout, resources): no token, no index credentials, no database;
a worker that needs credentials for the index has them in its own environment.

* Resources a recipe declares (``resources = {metal = 1}``) go to ``client.submit(...,
  resources=...)``, so only workers started with ``--resources "metal=1"`` run it. When no
  connected worker offers them, the run stops with one line naming the resource and how
  to start such a worker.
* A worker that dies mid-probe: the scheduler hands the task to another worker (its
  ``allowed-failures``, 3 by default); the dead worker's recipe dies with it (parent-death
  signal), so the probe is simply run again, never judged from half a run. A task that
  kills that many workers stops the run with one line (nothing recorded for it).
* ``--diverge-from``: the reference release's output files are scattered to the cluster
  once per reference and checked and stored by each worker before its recipe runs; the
  outputs a worker's run wrote come back with its result and are stored in the
  coordinator's cache (only those it lacks; bounded: :mod:`envbisect.outputs_transfer`).
* Reuse: a stored probe is reused when its key matches the key it would have on one of
  the workers that could run it now (each worker reports its fingerprint and interpreter).
* Build ahead (``--prefetch``): :meth:`DaskExecutor.build_ahead` hands a resolved lock to
  one worker that could run its probe (chosen by the candidate's place in its round, so a
  round's candidates are built on distinct workers), which builds it in the background (:mod:`envbisect.remote_ahead`); the probe
  of that lock then prefers that worker (``workers=[it]``, ``allow_other_workers``), unless
  another probe in flight was already sent there for the same reason.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from envbisect import remote_ahead
from envbisect.errors import ConfigError, EnvbisectError, ExecutorError, first_line
from envbisect.executor import Place, ProbeTask, TaskResult, execute_remote, worker_place
from envbisect.outputs_transfer import receive, reference_files
from envbisect.plan import Lock
from envbisect.remote_ahead import BuildAhead
from envbisect.redact import redact

INSTALL_HINT = "pip install 'envbisect[dask]'"
CONNECT_TIMEOUT_S = 10


def _resources(resources: Mapping[str, float]) -> str:
    return ",".join(f"{name}={amount:g}" for name, amount in sorted(resources.items()))


class DaskExecutor:
    """Submits probe tasks to the workers of one Dask scheduler."""

    kind = "dask"

    def __init__(self, scheduler: str, *, python: str | None = None, outputs_root: Path | None = None) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(f"--executor dask needs Dask distributed, which is not installed; {INSTALL_HINT}") \
                from None
        self.scheduler = scheduler
        self.python = python
        try:  # the address's form was checked with the settings (config.dask_address_problem)
            self.client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {redact(scheduler)} ({_first_line(exc)}); "
                                "start one with `dask scheduler`, or fix --scheduler / ENVBISECT_SCHEDULER") from None
        #: The coordinator's outputs store: reference files are read from it, probes' land in it.
        self.outputs_root = outputs_root
        self._scattered: dict[str, object] = {}  # reference digest -> dask future of its files
        self._places: dict[str, Place] = {}
        self._running: dict[str, object] = {}  # key -> dask future (Dask drops unreferenced ones)
        self._lock = threading.Lock()
        self._ahead: dict[str, str] = {}  # lock hash -> the worker building it ahead
        self._preferred: set[str] = set()  # workers a probe in flight was sent to for its env
        self._scatter_lock = threading.Lock()

    def _workers(self, resources: Mapping[str, float]) -> list[str]:
        # Asked of the scheduler each time, not through ``client.scheduler_info()``: the
        # client's own periodic refresh overwrites that cache without per-worker entries
        # (n_workers=0), so under load it could answer "no workers" on a full cluster.
        workers = self.client.sync(self.client.scheduler.identity, n_workers=-1).get("workers", {})
        if not workers:
            raise ExecutorError(f"no Dask worker is connected to {redact(self.scheduler)}; start one with "
                                f"`dask worker {redact(self.scheduler)}`")
        fit = [addr for addr, info in workers.items()
               if all((info.get("resources") or {}).get(name, 0) >= amount for name, amount in resources.items())]
        if not fit:
            offered = sorted({_resources(info.get("resources") or {}) for info in workers.values()} - {""})
            raise ExecutorError(
                f"no Dask worker offers the resources the recipe needs ({_resources(resources)}; the {len(workers)} "
                f"connected offer {', '.join(offered) or 'none'}); start one on a machine that has them with "
                f"`dask worker {redact(self.scheduler)} --resources \"{_resources(resources)}\"`")
        return fit

    def places(self, resources: Mapping[str, float] | None = None) -> list[Place]:
        """The machines that could run a probe needing ``resources`` (one per distinct
        fingerprint and interpreter); :class:`ExecutorError` when none could."""
        workers = self._workers(resources or {})
        missing = [w for w in workers if w not in self._places]
        if missing:
            self._places.update(self.client.run(worker_place, self.python, workers=missing))
        unique = {(p.host, p.python, p.implementation, p.platform): p for w in workers if (p := self._places.get(w))}
        return list(unique.values())

    def submit(self, task: ProbeTask) -> Future:
        """Run ``task`` on a worker that offers its resources; the result comes back in a
        :class:`concurrent.futures.Future`."""
        fit = self._workers(task.resources)  # fail with the one line now, not by waiting forever
        key = f"envbisect-probe-{task.run_id}-{task.attempt}-{uuid.uuid4().hex[:12]}"
        with self._lock:
            where = self._ahead.pop(Lock.from_text(task.lock_text).hash, None) if self._ahead else None
            if where not in fit or where in self._preferred:
                where = None  # gone, or taken by another probe this round: any worker will do
            if where is not None:
                self._preferred.add(where)
        remote = self.client.submit(execute_remote, task, self._reference_files(task), key=key, pure=False,
                                    resources=dict(task.resources) or None,
                                    workers=[where] if where else None, allow_other_workers=where is not None)
        bridge: Future = Future()
        with self._lock:
            self._running[key] = remote

        def done(fut) -> None:
            with self._lock:
                self._running.pop(key, None)
                self._preferred.discard(where)
            try:
                bridge.set_result(self._landed(_checked(fut.result())))
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator
                bridge.set_exception(_translate(exc, task))

        remote.add_done_callback(done)
        return bridge

    def build_ahead(self, hint: BuildAhead, resources: Mapping[str, float] | None = None, slot: int = 0) -> None:
        """Have one worker that could run the probe of ``hint`` build its env now, in the
        background (:mod:`envbisect.remote_ahead`): the ``slot``-th of them, so the
        candidates of one round (slots 0, 1, ...) are built on, and later sent to, distinct
        workers."""
        fit = sorted(self._workers(resources or {}))
        where = fit[slot % len(fit)]
        with self._lock:
            self._ahead[hint.lock_hash] = where
        self.client.run(remote_ahead.start, hint, workers=[where])

    def drop_ahead(self, *lock_hashes: str) -> None:
        """Stop building these locks ahead: the search no longer needs them."""
        by_worker: dict[str, list[str]] = {}
        with self._lock:
            for lock_hash in lock_hashes:
                if (where := self._ahead.pop(lock_hash, None)) is not None:
                    by_worker.setdefault(where, []).append(lock_hash)
        for where, hashes in by_worker.items():
            self.client.run(remote_ahead.cancel, *hashes, workers=[where])

    def _reference_files(self, task: ProbeTask):
        """The reference's output files as one Dask future, scattered once per reference
        (every task of the run names the same one; a worker fetches it once), or None."""
        if task.reference is None or self.outputs_root is None:
            return None
        digest = task.reference["digest"]
        with self._scatter_lock:  # not self._lock: the done callbacks take that one
            if digest not in self._scattered:
                files = reference_files(self.outputs_root, task.reference)
                self._scattered[digest] = self.client.scatter([files], hash=False)[0]
            return self._scattered[digest]

    def _landed(self, result: TaskResult) -> TaskResult:
        """Store the outputs a worker sent back in the coordinator's cache (checked again)."""
        if result.output_files and self.outputs_root is not None:
            receive(self.outputs_root, result.output_files)
        return replace(result, output_files=None)

    def close(self) -> None:
        with self._lock:
            running = list(self._running.values())
            self._running.clear()
        with self._scatter_lock:
            running += list(self._scattered.values())
            self._scattered.clear()
        try:
            if running:
                self.client.cancel(running)
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a client to a scheduler that went away
            pass


def _checked(result: object) -> TaskResult:
    if not isinstance(result, TaskResult):
        raise ExecutorError(f"a Dask worker returned {type(result).__name__}, not a probe result; "
                            "install the same envbisect version on the workers")
    return result


def _translate(exc: BaseException, task: ProbeTask) -> BaseException:
    """A worker-side failure as the one line the user sees (envbisect's own errors pass)."""
    if isinstance(exc, EnvbisectError):
        return exc
    name = type(exc).__name__
    if name == "KilledWorker":
        return ExecutorError(f"the probe of {task.label} killed every Dask worker that ran it; nothing was "
                             "recorded for it: check the workers' memory and logs, then run the same command "
                             "again (the run resumes)")
    if name in ("CancelledError", "FutureCancelledError"):
        return ExecutorError(f"the Dask scheduler dropped the probe of {task.label} (scheduler restarted?); "
                             "run the same command again (the run resumes)")
    if isinstance(exc, (ModuleNotFoundError, ImportError)):
        return ExecutorError(f"a Dask worker cannot import envbisect ({_first_line(exc)}); "
                             f"{INSTALL_HINT} on every worker")
    return exc


def _first_line(exc: BaseException) -> str:
    return redact(first_line(exc))[:200]
