"""Executors: where a probe's recipe runs. One interface, two kinds.

Execution layer. The session submits a :class:`ProbeTask` (one attempt of one candidate:
the recipe's text and hash, the exact lock, the declared env values, the timeout, the
resources the recipe needs) and gets back a :class:`TaskResult` (the raw run: exit,
signal, timing, tails, metrics; the resolved set; the env key; where it ran). Judging
and storing stay with the session in the coordinating process: an executor never opens
the database, and nothing in a task is secret (no token, no index credentials: a
machine that needs credentials for the index has them in its own environment).

* :class:`LocalExecutor` (the default) runs tasks on this machine: with ``--jobs 1`` in
  the calling thread (exactly what a probe always did), with ``--jobs k`` in up to ``k``
  daemon threads (a killed coordinator takes its recipes with it: every child gets the
  parent-death signal, see :mod:`envbisect.procs`).
* :class:`envbisect.dask_executor.DaskExecutor` (``--executor dask``, the optional
  ``envbisect[dask]`` extra) runs each task on a Dask worker, which builds the env from
  the lock in its own cache.

:func:`execute` is the task body both use. A recipe that declares ``exclusive = true``
or ``resources = {gpu = 1}`` holds a host-wide lock per resource while it runs, so two
such probes never run at once on one host, whatever executor, process or worker started
them.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from filelock import FileLock

from envbisect import envguard, outputs
from envbisect.config import CachePaths, default_cache_dir
from envbisect.envs import EnvManager, EnvSpec, entries, env_key, host_platform
from envbisect.errors import CacheError, InstallFailed
from envbisect.host import fingerprint, fingerprint_id
from envbisect.index import INDEX_VARIABLES, IndexConfig
from envbisect.installer import Interpreter, find_interpreter
from envbisect.outputs import OUTPUTS_ENV
from envbisect.plan import Lock
from envbisect.redact import strip_credentials
from envbisect.runner import run_recipe, scrubbed_environ
from envbisect.sourceprobe import read_sources


@dataclass(frozen=True)
class Place:
    """A machine (and interpreter) that runs probes, as it describes itself."""

    host: str
    fingerprint: dict[str, str]
    python: str
    implementation: str
    platform: str

    def env_key(self, lock_hash: str, installer: str) -> str:
        """The key the env of ``lock_hash`` has on this machine."""
        return env_key(python=self.python, implementation=self.implementation, platform=self.platform,
                       lock=lock_hash, installer=installer)


@dataclass(frozen=True)
class ProbeTask:
    """One attempt of one candidate, self-contained (it can be pickled to another machine)."""

    run_id: int
    label: str
    attempt: int
    recipe_name: str
    recipe_text: str
    recipe_hash: str
    lock_text: str
    timeout: float
    env_values: dict[str, str | None] = field(default_factory=dict)
    python: str | None = None
    installer: str = "uv"
    allow_build: bool = False
    exclusive: bool = False
    resources: dict[str, float] = field(default_factory=dict)
    #: The index without credentials (a worker whose own environment names no index uses it).
    index: IndexConfig = field(default_factory=IndexConfig)
    #: The recipe's path on the coordinating machine (a local executor runs it in place).
    recipe_path: str | None = None
    #: The reference release's outputs to compare with (``--diverge-from``; version, digest,
    #: manifest): their contents are read from this machine's cache (:mod:`envbisect.outputs`),
    #: where the Dask executor has them delivered first (:mod:`envbisect.outputs_transfer`).
    reference: dict | None = None


@dataclass(frozen=True)
class TaskResult:
    """What running a :class:`ProbeTask` produced: a raw run, or why the env failed."""

    place: Place
    env_key: str
    resolved: dict[str, str] = field(default_factory=dict)
    env_build_s: float = 0.0
    raw: dict | None = None
    install_failed: str | None = None
    #: What :mod:`envbisect.sourceprobe` read in the env (first attempt only).
    source: dict | None = None
    #: From a worker: the output files the coordinator lacks (hash -> bytes), which the
    #: Dask executor stores in the coordinator's cache (:mod:`envbisect.outputs_transfer`).
    output_files: dict[str, bytes] | None = None


def place_of(interpreter: Interpreter) -> Place:
    """This machine, running ``interpreter``."""
    fp = fingerprint()
    return Place(fingerprint_id(fp), fp, interpreter.version, interpreter.implementation, host_platform())


def worker_place(python: str | None) -> Place:
    """What a worker machine says of itself for ``--python`` (Dask's ``client.run``)."""
    return place_of(find_interpreter(python))


def public_index(index: IndexConfig) -> IndexConfig:
    """``index`` with every credential removed: what a task may carry."""
    return IndexConfig(strip_credentials(index.index_url), tuple(map(strip_credentials, index.extra_index_urls)),
                       tuple(map(strip_credentials, index.find_links)))


@dataclass
class Workshop:
    """What one machine runs probes with: its cache, index, interpreter and env manager."""

    cache: CachePaths
    index: IndexConfig
    interpreter: Interpreter
    local: bool = True
    envs: EnvManager | None = None

    def __post_init__(self) -> None:
        self.envs = self.envs or EnvManager(self.cache)
        self.place = place_of(self.interpreter)

    def recipe_file(self, task: ProbeTask) -> Path:
        """The recipe to run: in place on the coordinating machine, else a copy of the
        task's text under this machine's cache (named by its hash, written atomically)."""
        if self.local and task.recipe_path:
            return Path(task.recipe_path)
        target = self.cache.root / "recipes" / task.recipe_hash[:16] / task.recipe_name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(task.recipe_text, encoding="utf-8")
            os.replace(tmp, target)
        return target


@functools.lru_cache(maxsize=8)
def worker_workshop(python: str | None, task_index: IndexConfig) -> Workshop:
    """A worker's workshop: its own cache (``ENVBISECT_CACHE_DIR`` or ``./cache``) and the
    index its own environment names (with its credentials), else the task's."""
    if any(os.environ.get(k) for k in INDEX_VARIABLES):
        index = IndexConfig.resolve(os.environ)
    else:
        index = IndexConfig.resolve(os.environ, index_url=task_index.index_url,
                                    extra_index_urls=task_index.extra_index_urls, find_links=task_index.find_links)
    cache = CachePaths(default_cache_dir().absolute()).ensure()
    return Workshop(cache, index, find_interpreter(python), local=False)


#: The recipe sees which run of its probe this is (0, 1, ...: ``--retries`` attempts and
#: ``--samples auto`` samples), so a noisy recipe can seed from it and stay reproducible.
SAMPLE_ENV = "ENVBISECT_SAMPLE"


def recipe_environ(env_bin: Path, values: Mapping[str, str | None]) -> dict[str, str]:
    """The recipe's environment: this machine's, scrubbed, with the declared values the
    probe key holds (None: unset), so a remote run sees what the key says."""
    environ = scrubbed_environ(env_bin=env_bin)
    for name, value in values.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def host_lock_dir() -> Path:
    """Where the host-wide resource locks live: one directory in the system's temporary
    directory shared by every user (sticky and world-writable, like ``/tmp`` itself), so a
    probe run by the worker service's user and one run by a person at the same machine
    take the same lock (a service must not get a private ``/tmp``: see contrib/)."""
    path = Path(tempfile.gettempdir()) / "envbisect-host-locks"
    try:
        path.mkdir(exist_ok=True)
        if path.stat().st_uid == getattr(os, "getuid", lambda: -1)():
            path.chmod(0o1777)
    except OSError as exc:
        raise CacheError(f"cannot create the host lock directory {path}: {exc.strerror}; "
                         "fix its permissions (it must be writable by every user: chmod 1777)") from None
    return path


def host_locks(task: ProbeTask) -> ExitStack:
    """Host-wide locks for an exclusive recipe and for each resource it declares: probes
    that hold one never run two at a time on this host, whoever started them."""
    stack = ExitStack()
    names = sorted({*(["exclusive"] if task.exclusive else []), *task.resources})
    for name in names:
        path = host_lock_dir() / f"{_safe(name)}.lock"
        stack.enter_context(FileLock(str(path), mode=0o666))
    return stack


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_+" else "_" for c in label)[:60]


def spec_for(shop: Workshop, lock_text: str, installer: str, allow_build: bool) -> EnvSpec:
    """The env of ``lock_text`` on this machine (a probe's, or one built ahead of it)."""
    return EnvSpec(shop.interpreter, Lock.from_text(lock_text), shop.index, installer=installer,
                   allow_build=allow_build)


def execute(task: ProbeTask, shop: Workshop, settled: Callable[[], None] | None = None) -> TaskResult:
    """Build (or find) the env of ``task.lock_text`` and run the recipe once in it.
    ``settled`` (:class:`Launches`) is called once the task is no longer about to start its
    recipe: its env must be built first, or the recipe has started."""
    spec = spec_for(shop, task.lock_text, task.installer, task.allow_build)
    env = shop.envs.lookup(spec)
    if env is None and settled is not None:
        settled()
    try:
        env = shop.envs.ensure(spec) if env is None else env
    except InstallFailed as exc:
        return TaskResult(shop.place, spec.key, install_failed=str(exc))
    return run_in(task, shop, env, sources=task.attempt == 0, started=settled)


def run_in(task: ProbeTask, shop: Workshop, env, *, sources: bool = False,
           started: Callable[[], None] | None = None) -> TaskResult:
    """Run the recipe of ``task`` once in the built ``env``: its outputs stored and compared
    with ``task.reference`` (:func:`envbisect.outputs.gather`), and, with ``sources``, what
    the env's packages were built from. ``bisect show --rerun`` calls it with the env the
    cache kept (or uv rebuilt offline), so a re-run is measured as a probe is."""
    log = shop.cache.logs / f"run-{task.run_id}" / f"{_safe(task.label)}-{env.key[:8]}-{task.attempt}.log"
    environ = dict(recipe_environ(env.python.parent, task.env_values), **{SAMPLE_ENV: str(task.attempt)})
    out_dir = environ[OUTPUTS_ENV] = str(outputs.scratch_dir(shop.cache.scratch))
    with shop.envs.in_use(env), host_locks(task):
        # As built (a found env was checked against its build when looked up), or read now.
        before = env.entries if env.entries is not None else entries(env.path)
        try:
            raw = run_recipe(env.python, shop.recipe_file(task), timeout=task.timeout, log_path=log,
                             scratch_dir=shop.cache.scratch, env=environ, on_start=started).to_dict()
        except InstallFailed as exc:  # the env's interpreter cannot start
            return TaskResult(shop.place, env.key, install_failed=str(exc))
        finally:
            environ.pop(OUTPUTS_ENV)
        if (changed := envguard.describe(before, entries(env.path))) is not None:
            envguard.taint(env.path, changed)  # never run in again; this probe is untestable
            raw["env_changed"] = changed
        # After the recipe, so they never delay or disturb the measurement.
        raw.update(outputs.gather(Path(out_dir), outputs.store_root(shop.cache.root), raw, task.reference,
                                  env.python, environ))
        # Read when the env was built (its marker); an env an earlier envbisect built is read now.
        source = (env.sources or read_sources(env.python, environ, task.timeout)) if sources else None
    return TaskResult(shop.place, env.key, env.resolved, env.build_s if task.attempt == 0 else 0.0, raw,
                      source=source)


def execute_remote(task: ProbeTask, reference_files: dict[str, bytes] | None = None) -> TaskResult:
    """The task body on a worker machine (what the Dask executor submits): the reference's
    output files (checked, stored in this worker's cache) first, then :func:`execute`; the
    result carries back the outputs the coordinator does not have yet."""
    from envbisect.outputs_transfer import pack, receive

    shop = worker_workshop(task.python, task.index)
    root = outputs.store_root(shop.cache.root)
    receive(root, reference_files or {})
    result = execute(task, shop)
    if not result.raw or not result.raw.get("outputs"):
        return result
    present = [e.get("hash") for e in ((task.reference or {}).get("outputs") or {}).values()]
    files, left = pack(root, result.raw["outputs"], present)
    raw = dict(result.raw)
    if left:
        note = f"kept on the worker only (over the transfer limit): {', '.join(left)}"
        raw["outputs_note"] = "; ".join(filter(None, [raw.get("outputs_note"), note]))
    return replace(result, raw=raw, output_files=files)


class Launches:
    """The tasks handed to this machine's threads that are about to start their recipe (their
    env is built): builds ahead of need wait for them (:meth:`wait`), so a round's recipes
    start without a dozen installers starting beside them (on two cores that cost each
    ``--jobs 3`` round about 0.1 s)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._entered = 0

    def expect(self, n: int) -> int:
        """The count :meth:`wait` waits for once ``n`` more tasks are to be submitted."""
        with self._cond:
            return self._entered + n

    def enter(self) -> Callable[[], None]:
        """Count one task; returns its ``settled`` callback (idempotent)."""
        with self._cond:
            self._pending += 1
            self._entered += 1
        done = False

        def settled() -> None:
            nonlocal done
            with self._cond:
                if not done:
                    done = True
                    self._pending -= 1
                    self._cond.notify_all()
        return settled

    def wait(self, expected: int, timeout: float) -> bool:
        """Until ``expected`` tasks were submitted (:meth:`expect`) and none is about to start
        its recipe; at most ``timeout`` seconds (a task that waits on another's host lock,
        or one that was never submitted, holds nobody back for long)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._entered >= expected and self._pending == 0, timeout)


class LocalExecutor:
    """Runs tasks on this machine: in the caller's thread (``jobs`` 1) or in daemon threads."""

    kind = "local"

    def __init__(self, shop: Workshop, jobs: int = 1) -> None:
        self.shop = shop
        self.jobs = max(1, jobs)
        self.launches = Launches()

    def places(self, resources: Mapping[str, float] | None = None) -> list[Place]:
        return [self.shop.place]

    def submit(self, task: ProbeTask) -> Future:
        future: Future = Future()
        settled = self.launches.enter()
        if self.jobs == 1:  # exceptions (Ctrl-C, an outage) reach the caller directly
            try:
                future.set_result(execute(task, self.shop, settled))
            finally:
                settled()
            return future

        def work() -> None:
            try:
                future.set_result(execute(task, self.shop, settled))
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator
                future.set_exception(exc)
            finally:
                settled()

        threading.Thread(target=work, daemon=True, name=f"envbisect-probe-{task.label}").start()
        return future

    def close(self) -> None:
        pass
