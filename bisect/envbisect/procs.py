"""Child processes that never outlive envbisect, and leftovers that carry their owner.

Three tools, all about one promise: nothing envbisect starts keeps running, or keeps
files, after envbisect is gone.

**Children die with envbisect.** Every subprocess envbisect starts (installers, the
recipe, helper programs) goes through :func:`popen` or :func:`run`. On Linux the child
asks the kernel for ``PR_SET_PDEATHSIG`` = SIGKILL before it executes anything, so a
``kill -9`` of envbisect also kills the ``uv pip sync`` or the recipe it was waiting for;
without it they would run on under PID 1 (an orphaned uv even recreated a build
directory after the next run had swept it). The classic race is closed too: if
envbisect died between ``fork`` and ``prctl``, the child is already orphaned and the
signal would never come, so it compares ``getppid()`` with the pid it was forked from
and exits at once when they differ. Two limits: the death signal follows the *thread*
that started the child, not the process, so a thread that starts a child through
:func:`popen` must outlive it (wait for it, as every caller does today; never hand the
Popen to another thread and return), and it is not inherited by the child's own
children: a recipe's helpers outlive a SIGKILLed envbisect (the recipe dies, they are
orphaned to PID 1). Other systems have no such call: there a SIGKILLed envbisect leaves
its current child running (the next run still sweeps its files, below). Work done ahead
of need (:class:`Background`) starts without a ``preexec_fn`` where it can, through
``nice``, ``setpriv --pdeathsig KILL`` and the same parent check in ``sh``
(:func:`background_argv`): the same promise, at a sixth of the starting cost.

**Orphans come back to envbisect.** :func:`become_subreaper` makes this process a child
subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): a descendant whose parent exits is
reparented to envbisect instead of PID 1, so a recipe's grandchild that called
``setsid()`` and lost its parent can still be found. :func:`kill_adopted` finds the
ones that belong to one probe among envbisect's children, kills and reaps them. Which
child belongs to a probe: it is not a process envbisect started itself (:func:`popen`
keeps a registry), it was created after the probe started, and either its environment
carries the probe's marker (the recipe's ``ENVBISECT_RESULT`` path, unique per probe)
or, when it has no such variable at all, it lives in another session than envbisect
(plain children of envbisect stay in its session; a recipe's descendants are in the
recipe's session or one of their own). Dead ones (zombies, whose environment cannot be
read) are reaped on the session rule alone. macOS has no subreaper: there an orphan
goes to launchd and is only caught if the runner saw it in the recipe's tree before.

**Leftovers name their owner.** Scratch and build directories are named
``<prefix><pid>-<start>-<random>`` (:func:`owner_stamp`: the creating process's pid and
start time in centiseconds), so a later run can tell a directory whose creator died
(or whose pid now belongs to another process: another start time) from one a live
process still works in (:func:`is_leftover`, :func:`sweep_dirs`). Like every pid check
this holds on one host: a cache directory shared by machines or pid namespaces must not
be swept from two of them.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

#: prctl(2) options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Exit status of a child that found envbisect already gone before it could start
#: (nobody reads it: the parent is dead; it only has to be unlike any program's).
EXIT_ORPHANED = 253
#: A directory with this file inside is kept by the sweep (``keep_scratch``).
KEEP_MARKER = ".envbisect-keep"
#: Start times in names are centiseconds since the epoch; anything smaller is not one
#: (a name of an older envbisect: ``.tmp-<key>-<pid>-<6 hex>``).
_MIN_START_CS = 10**11
#: Start times recorded and read back may differ this much (the boot time they are
#: computed from is re-read, and can move by a second under clock adjustment).
START_TOLERANCE_S = 1.0
#: Rounds of kill-and-look-again in :func:`kill_adopted`: killing an adopted process
#: hands its own children to envbisect, which the next round catches.
_ADOPT_ROUNDS = 8


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once in the parent: the child must not import or
    load anything between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


_PRCTL = _load_prctl()
_LOCK = threading.Lock()
_SPAWNED: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()
_SUBREAPER_PID: int | None = None


# --- children that die with envbisect ------------------------------------------------


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux),
    or None where the system has no such call."""
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()  # the pid is taken here, in the parent

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(EXIT_ORPHANED)

    return set_death_signal


#: How much lower the CPU priority of work done ahead of need is (``nice`` increment).
BACKGROUND_NICE = 10
MAX_NICE = 19
_THREAD = threading.local()


class Background:
    """Work done ahead of need (a prefetch build): the children a thread starts inside
    :meth:`running` get a lower CPU priority (:data:`BACKGROUND_NICE`), so they take only
    the CPU the running probes leave, and :meth:`cancel` kills them, and any this job
    starts later, once the work is known to be useless."""

    def __init__(self, nice: int = 0) -> None:
        #: Its children's nice increment: :data:`BACKGROUND_NICE` plus ``nice`` (at most 19).
        self.nice = min(BACKGROUND_NICE + max(nice, 0), MAX_NICE)
        self._lock = threading.Lock()
        self._children: list[subprocess.Popen] = []
        self.cancelled = False

    @contextmanager
    def running(self) -> Iterator[Background]:
        before = getattr(_THREAD, "job", None)
        _THREAD.job = self
        try:
            yield self
        finally:
            _THREAD.job = before

    def adopt(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._children.append(proc)
            if self.cancelled:
                proc.kill()

    def cancel(self) -> None:
        """Kill this job's running children, and every one it starts from now on (they
        fail at once: the work ends as a failed build, never a half-built env)."""
        with self._lock:
            self.cancelled = True
            for proc in self._children:
                if proc.poll() is None:
                    proc.kill()


def _child_setup(job: Background | None) -> Callable[[], None] | None:
    """The ``preexec_fn`` of a child: the death signal and, for a background job, the
    lower priority."""
    dies = die_with_parent()
    if job is None:
        return dies

    def setup() -> None:
        if dies is not None:
            dies()
        os.nice(job.nice)

    return setup


#: The guard a wrapped background child runs before the program (``sh -c``): exit when
#: its parent is not the process that started it (as :func:`die_with_parent` does).
_GUARD = f'test "$PPID" = "$1" || exit {EXIT_ORPHANED}; shift; exec "$@"'


@functools.cache
def _wrappers() -> tuple[str, ...] | None:
    """``nice``, ``setpriv`` and ``sh``, where this system has all three and the death
    signal (Linux with util-linux), looked up once."""
    found = tuple(shutil.which(name) for name in ("nice", "setpriv", "sh"))
    return found if _PRCTL is not None and all(found) else None  # type: ignore[return-value]


def background_argv(args: Sequence[str], parent: int | None = None, nice: int = BACKGROUND_NICE) -> list[str] | None:
    """``args`` started as background work without a ``preexec_fn``: ``nice`` lowers the
    priority, ``setpriv --pdeathsig KILL`` asks for the death signal, and a one-line ``sh``
    guard exits when the parent (``parent``, default this process) is already gone; each
    executes the next in the same process, so the program keeps the pid envbisect started.
    Python forks, never vforks, a child with a ``preexec_fn``: about 4.6 ms of the starting
    process's time against 0.7 ms, under :data:`_LOCK`, which a ``--jobs 3`` round's dozen
    builds ahead (two or three installer runs each) paid beside its probes (bench_parallel,
    N = 256: 0.29 s of an 8.2 s run). None where the wrappers are missing: the
    ``preexec_fn`` path then."""
    found = _wrappers()
    if found is None:
        return None
    nice_bin, setpriv, sh = found
    return [nice_bin, "-n", str(nice), setpriv, "--pdeathsig", "KILL", "--", sh, "-c", _GUARD, "sh",
            str(os.getpid() if parent is None else parent), *map(os.fspath, args)]


def popen(args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """:class:`subprocess.Popen` that dies with envbisect (see the module docstring) and
    is registered as envbisect's own child (never taken for an adopted orphan). A
    background job's child goes through :func:`background_argv` where it can."""
    if kwargs.get("preexec_fn") is not None:
        raise ValueError("procs.popen sets preexec_fn itself")
    job: Background | None = getattr(_THREAD, "job", None)
    wrapped = background_argv(args, nice=job.nice) if job is not None and not kwargs.get("shell") else None
    if wrapped is not None:
        args = wrapped
    else:
        kwargs["preexec_fn"] = _child_setup(job)
    # Started and registered under one lock: another thread looking for adopted orphans
    # (kill_adopted, under the same lock) never sees this child unregistered, so it never
    # takes a probe that another thread just started for an orphan of its own.
    with _LOCK:
        proc = subprocess.Popen(args, **kwargs)
        _SPAWNED.add(proc)
    if job is not None:
        job.adopt(proc)
    return proc


def run(args: Sequence[str], *, input: str | bytes | None = None, capture_output: bool = False,
        timeout: float | None = None, check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """:func:`subprocess.run` through :func:`popen` (same arguments and result)."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with popen(args, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()  # Popen.__exit__ then waits for it
            raise
        code = proc.poll()
    if check and code:
        raise subprocess.CalledProcessError(code, proc.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(args, code, stdout, stderr)


def own_children() -> set[int]:
    """Pids of the processes started through :func:`popen` that are not reaped yet."""
    with _LOCK:
        return _registered()


def _registered() -> set[int]:
    """:func:`own_children` for a caller that holds ``_LOCK``."""
    return {p.pid for p in _SPAWNED if p.returncode is None}


# --- orphans that come back -----------------------------------------------------------


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux; once per process). True when it is one."""
    global _SUBREAPER_PID
    with _LOCK:
        if _SUBREAPER_PID == os.getpid():
            return True
        if _PRCTL is None or _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return False
        _SUBREAPER_PID = os.getpid()
        return True


def is_subreaper() -> bool:
    return _SUBREAPER_PID == os.getpid()


def kill_adopted(marker: tuple[str, str], since: float, *, wait_s: float = 1.0) -> list[psutil.Process]:
    """Kill and reap the orphans adopted by this (subreaper) process that belong to one
    probe: created at or after ``since`` (a psutil creation time), not started by
    envbisect, and carrying ``marker`` (name, value) in their environment, or no such
    variable and another session than ours. Returns those found (dead ones included).

    Nothing happens unless :func:`become_subreaper` succeeded in this process."""
    if not is_subreaper():
        return []
    found: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + wait_s
    for _ in range(_ADOPT_ROUNDS):
        with _LOCK:  # no popen in between: every child we started is in the registry
            mine = _registered()
            children = _own_children()
        adopted = [p for p in children if p.pid not in mine and _belongs(p, marker, since)]
        if not adopted:
            break
        victims = set(adopted)
        for process in adopted:  # their subtrees go in the same pass
            try:
                victims |= set(process.children(recursive=True))
            except psutil.Error:
                pass
        for process in victims:
            try:
                process.kill()
            except psutil.Error:
                pass
        reap(adopted, deadline)
        found.update((p.pid, p) for p in adopted)
    return list(found.values())


def reap(processes: Iterable[psutil.Process], deadline: float) -> None:
    """Wait (until ``deadline``, monotonic) for each process that is a child of ours, so
    that none stays a zombie; one by pid, never ``waitpid(-1)`` (that would steal the exit
    status of a :class:`subprocess.Popen` another thread waits for)."""
    me = os.getpid()
    for process in processes:
        try:
            if process.ppid() != me:
                continue
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (psutil.Error, ChildProcessError):
            pass


def _own_children() -> list[psutil.Process]:
    try:
        return psutil.Process().children()
    except psutil.Error:
        return []


def _belongs(process: psutil.Process, marker: tuple[str, str], since: float) -> bool:
    """Whether ``process`` (a child of ours, not one we started) is an orphan of the probe
    ``marker`` names."""
    try:
        if process.create_time() < since - START_TOLERANCE_S:
            return False
        foreign_session = os.getsid(process.pid) != os.getsid(0)
        if process.status() == psutil.STATUS_ZOMBIE:
            return foreign_session
        try:
            environ = process.environ()
        except psutil.AccessDenied:
            environ = {}
    except (psutil.Error, OSError):
        return False
    name, value = marker
    if name in environ:
        return environ[name] == value
    return foreign_session


# --- leftovers that name their owner --------------------------------------------------


def owner_stamp() -> str:
    """``<pid>-<start>`` for this process (start: creation time in centiseconds)."""
    return f"{os.getpid()}-{round(psutil.Process().create_time() * 100)}"


def parse_owner(rest: str) -> tuple[int, float] | None:
    """(pid, start time in seconds) from a name's ``<pid>-<start>-...`` part; None when
    it carries no stamp."""
    parts = rest.split("-")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()) or int(parts[1]) < _MIN_START_CS:
        return None
    return int(parts[0]), int(parts[1]) / 100


def owner_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``started`` (a pid
    reused by another process has another start time); a zombie is dead."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < START_TOLERANCE_S and \
            process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_leftover(name: str, prefix: str) -> bool | None:
    """For ``<prefix><pid>-<start>-...``: True when its creator is gone, False while it
    runs, None when the name is not of that form."""
    if not name.startswith(prefix):
        return None
    owner = parse_owner(name[len(prefix):])
    if owner is None:
        return None
    return not owner_alive(*owner)


def sweep_dirs(root: Path, prefix: str) -> list[Path]:
    """Remove the directories in ``root`` named ``<prefix><pid>-<start>-...`` whose creator
    is gone, except those holding :data:`KEEP_MARKER`; returns what was removed. Names
    without a stamp are left alone (nothing says whether their creator runs)."""
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for path in entries:
        if is_leftover(path.name, prefix) and path.is_dir() and not (path / KEEP_MARKER).exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
