"""Stop a probe's whole process tree: the recipe, its process group, every descendant
seen while it ran (by pid and creation time, so a recycled pid is never signalled), and
orphans adopted by envbisect as a child subreaper (see :mod:`envbisect.procs`).

Split from :mod:`envbisect.runner`, which starts the recipe and reads its results; the
rules for what is caught on which system are in the runner's module docstring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable

import psutil

from envbisect import procs

#: While the recipe runs, its descendants are looked up this often (seconds), so that
#: one leaving the process group is still known when the recipe is stopped.
POLL_S = 0.2
#: How long to wait for killed descendants to disappear after the recipe has exited.
REAP_WAIT_S = 1.0


def wait_and_stop(proc: subprocess.Popen, timeout: float, grace_s: float, marker: tuple[str, str] | None = None,
          started: float | None = None) -> tuple[int, bool, float]:
    """Wait for the recipe; stop its tree on timeout; always kill what is left of it.

    Returns (returncode, timed_out, duration). The leader is waited for in steps of
    :data:`POLL_S`, refreshing the set of known descendants at each step (see the module
    docstring). On timeout the group and the known descendants get SIGTERM and the
    leader gets ``grace_s`` to exit; then everything left gets SIGKILL, and so do the
    orphans envbisect adopted (as a subreaper) that carry ``marker`` (the probe's
    ``ENVBISECT_RESULT``, name and value) or left the session, created since ``started``.
    """
    pgid = proc.pid  # start_new_session: the recipe leads its own group
    tree = _Tree(proc)
    since = tree.started if tree.started is not None else (time.time() if started is None else started)
    start = time.monotonic()
    timed_out = False
    try:
        exited = _poll(proc, tree, start + timeout)
        duration = time.monotonic() - start
        if not exited:
            timed_out = True
            _stop(pgid, tree, signal.SIGTERM)
            _poll(proc, tree, time.monotonic() + grace_s)
    except BaseException:
        # Ctrl-C or anything else while waiting: leave nothing running behind us.
        _stop(pgid, tree, signal.SIGKILL)
        proc.wait()
        _kill_survivors(tree)
        _kill_adopted(tree, marker, since)
        raise
    # Forked helpers left behind (or ignoring SIGTERM) must not outlive the probe.
    _stop(pgid, tree, signal.SIGKILL)
    returncode = proc.wait()
    _kill_survivors(tree)
    _kill_adopted(tree, marker, since)
    return returncode, timed_out, duration


def _kill_adopted(tree: _Tree, marker: tuple[str, str] | None, since: float) -> None:
    """Kill and reap the orphans of this probe that were reparented to envbisect (a child
    subreaper on Linux; see :mod:`envbisect.procs`), then reap the known descendants that
    died as envbisect's adopted children, so no zombie of the probe is left behind."""
    if marker is not None:
        procs.kill_adopted(marker, since, wait_s=REAP_WAIT_S)
    procs.reap(tree.known, time.monotonic() + REAP_WAIT_S)


class _Tree:
    """The recipe's descendants seen so far, as psutil processes.

    psutil processes compare by (pid, creation time), and psutil checks that identity
    again before sending a signal, so a remembered process whose pid was reused by an
    unrelated one is never signalled. Every psutil error (the process is gone, a zombie,
    or not ours to inspect) is taken as "nothing to do".
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        #: The leader's creation time: every descendant (and adopted orphan) of the
        #: probe was created after it. None when the leader was already gone.
        self.started: float | None = None
        try:
            self._leader: psutil.Process | None = psutil.Process(proc.pid)
            self.started = self._leader.create_time()
        except psutil.Error:
            self._leader = None  # already gone: its group is all that can be signalled
        self.known: set[psutil.Process] = set()

    def refresh(self) -> None:
        """Add the leader's current descendants and forget known ones that are gone.

        Only while the leader has not been reaped: after that its pid may belong to
        another process. Known processes missing from the new snapshot have left the
        tree (reparented after their parent exited, or dead): they are kept while alive.
        """
        if self._leader is None or self._proc.returncode is not None:
            return
        current = _descendants(self._leader)
        self.known = current | {p for p in self.known - current if _alive(p)}

    def expand(self) -> None:
        """Add the descendants of known processes that left the tree (orphans that kept
        forking after the last refresh); done once, just before the final kill."""
        for escaped in [p for p in self.known if _alive(p)]:
            self.known |= _descendants(escaped)


def _descendants(process: psutil.Process) -> set[psutil.Process]:
    """``process``'s descendants now; empty when it is gone or cannot be inspected."""
    try:
        return set(process.children(recursive=True))
    except psutil.Error:
        return set()


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (an orphaned zombie may never be reaped in a container
    whose PID 1 does not reap, so it counts as gone)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _poll(proc: subprocess.Popen, tree: _Tree, deadline: float) -> bool:
    """Wait for the leader until ``deadline`` (monotonic), refreshing ``tree`` every
    :data:`POLL_S`; True when the leader has exited (it is then reaped)."""
    while True:
        tree.refresh()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return proc.poll() is not None
        try:
            proc.wait(timeout=min(POLL_S, remaining))
        except subprocess.TimeoutExpired:
            continue
        return True


def _stop(pgid: int, tree: _Tree, sig: int) -> None:
    """Send ``sig`` to the recipe's process group and to every known descendant, in
    whatever session or group it now is. The tree is refreshed first (while the leader
    lives) so that descendants started since the last poll are included; before SIGKILL
    the descendants of escaped ones are added too."""
    tree.refresh()
    if sig == signal.SIGKILL:
        tree.expand()
    _signal_group(pgid, sig)
    _signal_each(tree.known, sig)


def _signal_each(processes: Iterable[psutil.Process], sig: int) -> None:
    """Send ``sig`` to each process; gone, zombie or foreign ones are skipped."""
    for process in processes:
        try:
            process.send_signal(sig)
        except psutil.Error:
            pass


def _kill_survivors(tree: _Tree, wait_s: float = REAP_WAIT_S) -> None:
    """After the leader has exited: SIGKILL every known descendant still alive and wait
    up to ``wait_s`` for them to go.

    Not :func:`psutil.wait_procs`: it counts an orphaned zombie as alive, so where PID 1
    never reaps orphans (some containers) it would wait out its whole timeout on every
    probe that left a helper behind.
    """
    left = [p for p in tree.known if _alive(p)]
    _signal_each(left, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]


def _signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to the process group; an empty group is not an error."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # nothing left in the group
    except PermissionError:
        pass  # macOS answers EPERM for a group holding only zombies
