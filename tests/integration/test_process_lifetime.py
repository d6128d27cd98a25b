"""Nothing envbisect starts outlives it, and what a killed run left behind is swept.

All real processes: ``bisect run`` killed with SIGKILL while a recipe or a ``uv pip sync``
runs (the planted index delays its file downloads to catch an install in progress),
helper interpreters that start children through :mod:`envbisect.procs` and die, and a
recipe whose grandchild escapes with ``setsid()`` the moment it is born. Recipes read
``PLANT_DIR`` (a plain variable, kept by the scrubbed recipe environment) to report pids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from filelock import FileLock
from support.cli import bisect_cli, cli_env, write_recipe
from support.procs import is_running

from envbisect import procs
from envbisect.cachemgr import sweep
from envbisect.config import CachePaths
from envbisect.runner import run_recipe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG and PR_SET_CHILD_SUBREAPER are Linux-only")

PYTHON = Path(sys.executable)


@pytest.fixture
def reap_pids():
    """Pids a test saw; whatever of them still runs at teardown is killed (a failing test
    must not leave a 300 s sleeper behind)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if is_running(pid, settle_s=0):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start_bisect(recipe: Path, index_url: str, cache: Path, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "envbisect", "run", str(recipe), "--index-url", index_url,
           "--cache-dir", str(cache), "--json"]
    return subprocess.Popen(cmd, cwd=cache.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(predicate, within: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"bisect exited early ({proc.returncode})")
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _stamp(pid: int, started: float) -> str:
    return f"{pid}-{round(started * 100)}"


def _dead_stamp() -> str:
    """A pid+start stamp of a process that has exited."""
    child = subprocess.Popen(["sleep", "30"])
    started = psutil.Process(child.pid).create_time()
    child.kill()
    child.wait()
    return _stamp(child.pid, started)


def _own_stamps() -> tuple[str, str]:
    """(this live process's real stamp, its pid with another start time: a reused pid)."""
    started = psutil.Process().create_time()
    return _stamp(os.getpid(), started), _stamp(os.getpid(), started - 1000)


# --- SIGKILL of bisect run -------------------------------------------------------------


def test_recipe_dies_when_bisect_run_is_sigkilled(tmp_path, planted_index, reap_pids):
    pids = tmp_path / "pids"
    pids.mkdir()
    recipe = write_recipe(tmp_path / "r.py", """
        import os, time, planted
        open(os.path.join(os.environ["PLANT_DIR"], str(os.getpid())), "w").close()
        time.sleep(300)
    """, timeout=600)
    bisect = _start_bisect(recipe, planted_index.url, tmp_path / "cache", cli_env(PLANT_DIR=str(pids)))
    try:
        pid = int(_wait_for(lambda: [p.name for p in pids.iterdir()], 120, bisect)[0])
        reap_pids.append(pid)
    finally:
        bisect.kill()
        bisect.wait()
    assert not is_running(pid, settle_s=5), f"recipe {pid} outlived the SIGKILLed bisect run"


def test_sigkill_during_a_build_kills_uv_and_the_next_run_sweeps_leftovers(tmp_path, planted_index, reap_pids):
    cache = tmp_path / "cache"
    recipe = write_recipe(tmp_path / "r.py", """
        import sys, planted
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    planted_index.index.delay_files_s = 120  # `uv pip sync` waits for the wheel: a build in progress
    bisect = _start_bisect(recipe, planted_index.url, cache, cli_env())

    def syncing() -> list[psutil.Process]:
        try:
            tree = psutil.Process(bisect.pid).children(recursive=True)
        except psutil.Error:
            return []
        found = []
        for p in tree:
            try:
                if "sync" in p.cmdline():
                    found.append(p)
            except psutil.Error:
                pass
        return found

    try:
        uv = _wait_for(syncing, 120, bisect)
        tmp_dirs = _wait_for(lambda: [p for p in (cache / "envs").glob(".tmp-*")], 10, bisect)
        build = [p for p in psutil.Process(bisect.pid).children(recursive=True)]
        reap_pids.extend(p.pid for p in build)
    finally:
        bisect.kill()
        bisect.wait()
    assert uv and tmp_dirs
    survivors = [p.pid for p in build if is_running(p.pid, settle_s=5)]
    assert survivors == [], f"processes of the killed build outlived bisect: {survivors}"
    assert all(d.exists() for d in tmp_dirs), "nothing swept yet: the kill left them"

    # Leftovers of dead processes the next run must remove, and one of a live process it
    # must keep (this test process, with its real start time).
    live, reused = _own_stamps()
    scratch = cache / "scratch"
    dead_probe = scratch / f"probe-{_dead_stamp()}-abc123"
    reused_probe = scratch / f"probe-{reused}-abc123"
    live_probe = scratch / f"probe-{live}-abc123"
    live_build = cache / "envs" / f".tmp-{'f' * 20}-{live}-abcdef"
    for d in (dead_probe, reused_probe, live_probe, live_build):
        (d / "work").mkdir(parents=True)

    planted_index.index.release_files()
    again = bisect_cli("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache), "--json",
                       cwd=tmp_path, check_json=True)
    assert again.returncode == 0 and again.json["first_bad"] == "1.6", again.stderr
    assert not any(d.exists() for d in tmp_dirs), "the killed build's directory was not swept"
    assert not dead_probe.exists(), "scratch of a dead process was not swept"
    assert not reused_probe.exists(), "scratch named after a reused pid (other start time) was not swept"
    assert live_probe.is_dir() and live_build.is_dir(), "a live process's directories were removed"


# --- orphans adopted by the subreaper ------------------------------------------------


DOUBLE_FORK = """\
import os, sys, time
PID_FILE = {pid_file!r}
if os.fork() == 0:              # the intermediate child
    if os.fork() == 0:          # the grandchild: leaves the session, then lingers
        os.setsid()
        with open(PID_FILE + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(PID_FILE + ".tmp", PID_FILE)
        time.sleep({linger})
        os._exit(0)
    os._exit(0)                 # orphans the grandchild at once
os.wait()
while not os.path.exists(PID_FILE):
    time.sleep(0.01)
time.sleep({recipe_linger})
sys.exit(0)
"""


def _double_fork(tmp_path: Path, linger: float, recipe_linger: float = 0.0) -> tuple[Path, Path]:
    pid_file = tmp_path / "grandchild.pid"
    recipe = tmp_path / "double_fork.py"
    recipe.write_text(DOUBLE_FORK.format(pid_file=str(pid_file), linger=linger, recipe_linger=recipe_linger))
    return recipe, pid_file


def _run(tmp_path: Path, recipe: Path, **kwargs):
    kwargs.setdefault("timeout", 30)
    return run_recipe(PYTHON, recipe, log_path=tmp_path / "logs" / "r.log", scratch_dir=tmp_path / "scratch",
                      **kwargs)


def test_setsid_grandchild_orphaned_at_once_is_killed_after_the_probe(tmp_path, reap_pids):
    recipe, pid_file = _double_fork(tmp_path, linger=300)
    result = _run(tmp_path, recipe)
    pid = int(pid_file.read_text())
    reap_pids.append(pid)
    assert (result.exit_code, result.timed_out) == (0, False), result.stderr_tail
    assert not is_running(pid, settle_s=2), f"orphaned setsid grandchild {pid} outlived the probe"


def test_adopted_orphan_that_exits_by_itself_is_reaped(tmp_path, reap_pids):
    recipe, pid_file = _double_fork(tmp_path, linger=0.2, recipe_linger=1.0)
    result = _run(tmp_path, recipe)
    pid = int(pid_file.read_text())
    reap_pids.append(pid)
    assert result.exit_code == 0, result.stderr_tail
    assert not psutil.pid_exists(pid), f"adopted orphan {pid} was left a zombie"


def test_children_of_other_threads_are_not_taken_for_orphans(tmp_path):
    recipe = write_recipe(tmp_path / "r.py", """
        import time
        time.sleep(1.5)
    """, deps=())
    others: list[subprocess.Popen] = []
    checked = threading.Event()

    def start_others() -> None:  # while the probe runs, as another thread of envbisect would
        time.sleep(0.3)
        others.append(procs.popen(["sleep", "60"], start_new_session=True))  # registered, own session
        others.append(subprocess.Popen(["sleep", "60"]))  # not registered, envbisect's session
        checked.wait(60)  # the thread lives as long as its children (their death signal follows it)

    helper = threading.Thread(target=start_others)
    helper.start()
    try:
        result = _run(tmp_path, recipe)
        assert result.exit_code == 0, result.stderr_tail
        assert len(others) == 2
        assert [p.poll() for p in others] == [None, None], "another thread's child was killed"
    finally:
        checked.set()
        helper.join()
        for p in others:
            p.kill()
            p.wait()


# --- procs: dying with the parent --------------------------------------------------------


def _helper(tmp_path: Path, body: str) -> subprocess.Popen:
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)


def _wait_for_cmdline(pid: int, cmdline: list[str], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while psutil.Process(pid).cmdline() != cmdline:
        assert time.monotonic() < deadline, f"{pid} never ran {cmdline}: {psutil.Process(pid).cmdline()}"
        time.sleep(0.01)


@pytest.mark.parametrize("background", [False, True], ids=["plain", "background"])
def test_a_child_started_through_procs_dies_with_its_parent(tmp_path, reap_pids, background):
    # A background child goes through its wrappers (nice, setpriv, sh): same pid, same promise.
    helper = _helper(tmp_path, f"""
        import contextlib, time
        from envbisect import procs
        with procs.Background().running() if {background} else contextlib.nullcontext():
            child = procs.popen(["sleep", "300"])
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    try:
        pid = int(helper.stdout.readline())
        reap_pids.append(pid)
        _wait_for_cmdline(pid, ["sleep", "300"])
    finally:
        helper.kill()
        helper.wait()
        helper.stdout.close()
    assert not is_running(pid, settle_s=5), f"child {pid} outlived its SIGKILLed parent"


def test_a_child_whose_parent_is_already_gone_exits_before_it_starts(tmp_path):
    # The death signal is asked for after fork: a child that finds another parent than the
    # one it was started from (the parent died in between) must not run the program.
    helper = _helper(tmp_path, """
        import os, subprocess
        from envbisect import procs
        made_here = procs.die_with_parent()  # expects this process as the parent
        if os.fork() == 0:
            child = subprocess.Popen(["sleep", "30"], preexec_fn=made_here)  # parent: the fork
            print(child.wait(), flush=True)
            os._exit(0)
        os.wait()
    """)
    out, _ = helper.communicate(timeout=30)
    assert out.strip() == str(procs.EXIT_ORPHANED)


def test_a_background_child_whose_parent_is_already_gone_exits_before_it_starts(tmp_path):
    # The wrapped start (no preexec_fn): its guard compares the shell's parent with the pid
    # it was started from; here that pid is not its parent, as after envbisect died.
    argv = procs.background_argv([sys.executable, "-c", "print('ran')"], parent=os.getppid())
    if argv is None:
        pytest.skip("no nice/setpriv/sh or no death signal here: background children use preexec_fn")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (procs.EXIT_ORPHANED, "")
    started = subprocess.run(procs.background_argv([sys.executable, "-c", "print('ran')"], parent=os.getpid()),
                             capture_output=True, text=True, timeout=30)
    assert (started.returncode, started.stdout) == (0, "ran\n")


def test_run_behaves_like_subprocess_run(tmp_path):
    # Children that earlier tests of this process left unreaped are theirs, not run()'s
    # (CI once saw one here under load): only what this test starts must be gone.
    before = procs.own_children()
    done = procs.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], input="abc",
                     capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "ABC\n")
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["sleep", "30"], timeout=0.2)
    with pytest.raises(subprocess.CalledProcessError):
        procs.run([sys.executable, "-c", "raise SystemExit(3)"], check=True)
    assert procs.own_children() - before == set(), "finished children stay registered"


# --- sweeping leftovers named after their owner -----------------------------------------


def test_sweep_removes_only_leftovers_of_dead_processes(tmp_path):
    paths = CachePaths(tmp_path / "cache").ensure()
    live, reused = _own_stamps()
    dead = _dead_stamp()
    key, other, locked, legacy = "a" * 20, "b" * 20, "c" * 20, "d" * 20
    gone = [paths.scratch / f"probe-{dead}-x1", paths.scratch / f"probe-{reused}-x2",
            paths.envs / f".tmp-{key}-{dead}-abcdef", paths.envs / f".tmp-{other}-{reused}-abcdef",
            paths.envs / f".tmp-{legacy}-{os.getpid()}-123456"]  # an older envbisect's name: lock decides
    kept = [paths.scratch / f"probe-{live}-x3", paths.scratch / f"probe-{dead}-x4",
            paths.scratch / "probe-unstamped", paths.envs / f".tmp-{key}-{live}-abcdef",
            paths.envs / f".tmp-{locked}-{dead}-abcdef"]
    for d in gone + kept:
        d.mkdir(parents=True)
    (paths.scratch / f"probe-{dead}-x4" / procs.KEEP_MARKER).touch()  # keep_scratch
    (paths.envs / ".locks").mkdir()
    with FileLock(str(paths.envs / ".locks" / f"{locked}.lock")):  # a build of that key runs
        sweep(paths, wait=False)
    assert [d.name for d in gone if d.exists()] == []
    assert [d.name for d in kept if not d.exists()] == []


def test_cache_prune_sweeps_leftovers(tmp_path):
    cache = tmp_path / "cache"
    paths = CachePaths(cache).ensure()
    stale = paths.scratch / f"probe-{_dead_stamp()}-x"
    stale.mkdir()
    proc = bisect_cli("cache", "prune", "--max-size", "10GB", "--cache-dir", str(cache), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()


def test_background_children_run_niced_and_cancel_kills_them_and_later_ones(tmp_path):
    """Prefetch builds run as a procs.Background job: lower CPU priority than the probes,
    and killed (with every child the job starts afterwards) once their candidate is decided."""
    sleeper = [str(PYTHON), "-c", "import time; time.sleep(60)"]
    job = procs.Background()
    with job.running():
        proc = procs.popen(sleeper)
    plain = procs.popen(sleeper)
    try:
        _wait_for_cmdline(proc.pid, sleeper)  # through its wrappers (nice, setpriv, sh), same pid
        assert psutil.Process(proc.pid).nice() == os.getpriority(os.PRIO_PROCESS, 0) + procs.BACKGROUND_NICE
        assert psutil.Process(plain.pid).nice() == os.getpriority(os.PRIO_PROCESS, 0), "outside the job: unchanged"
        with procs.Background(4).running():
            ranked = procs.run([str(PYTHON), "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
                               capture_output=True, text=True, timeout=30)
        assert int(ranked.stdout) == os.getpriority(os.PRIO_PROCESS, 0) + procs.BACKGROUND_NICE + 4
        job.cancel()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert plain.poll() is None, "cancel kills the job's children only"
        with job.running():
            later = procs.run([str(PYTHON), "-c", "import time; time.sleep(60); print('ran')"], capture_output=True,
                              text=True, timeout=30)
        assert later.returncode == -signal.SIGKILL and later.stdout == "", "a cancelled job's next step fails at once"
    finally:
        for p in (proc, plain):
            p.kill()
            p.wait()


# --- staging slots of env builds -----------------------------------------------------


def test_env_builds_stage_in_locked_slots_and_move_into_place(tmp_path, planted_index):
    """Builds happen in a few staging directories that come back build after build (so uv
    knows the interpreter at that path), each under its own lock: a killed build's leftover
    in a free slot is removed by the next build there, one in a slot another build holds is
    left alone by builds and sweeps, a moved env works, and with every slot busy a build
    still happens (under a fresh name)."""
    from contextlib import ExitStack
    import hashlib

    from envbisect.envs import STAGE_SLOTS
    from envbisect.index import IndexConfig
    from envbisect.config import Settings
    from envbisect.session import Session
    from envbisect.store import Store

    paths = CachePaths(tmp_path / "cache").ensure()
    settings = Settings(cache=paths, index=IndexConfig.resolve({}, index_url=planted_index.url))
    with Store(None) as store:
        session = Session(settings, store)

        def spec(version: str):
            return session.env_spec(session.lock([f"planted=={version}"]))

        tag = hashlib.sha256(session.interpreter.path.encode()).hexdigest()[:8]
        slot = [paths.envs / f".tmp-stage{tag}x{n}" for n in range(STAGE_SLOTS)]
        lock = [str(paths.envs / ".locks" / f"stage{tag}x{n}.lock") for n in range(STAGE_SLOTS)]
        session.envs.ensure(spec("1.0"))
        assert not slot[0].exists(), "the build moved out of its slot"
        (slot[0] / "junk").mkdir(parents=True)  # what a killed build left in slot 0
        with FileLock(lock[1]):  # slot 1: another build is at work there
            (slot[1] / "half-built").mkdir(parents=True)
            built = session.envs.ensure(spec("1.1"))
            sweep(paths, wait=False)
            assert (slot[1] / "half-built").is_dir(), "a slot in use was touched"
        assert not slot[0].exists(), "the leftover in the free slot was not cleared by the build there"
        version = subprocess.run([str(built.path / "bin" / "python"), "-c", "import planted; print(planted.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert version == "1.1" and not built.reused
        with ExitStack() as held:
            for path in lock:
                held.enter_context(FileLock(path))
            assert session.envs.ensure(spec("1.2")).path.is_dir(), "every slot busy: no build"
        assert not any(p.exists() for p in slot[2:]) and not list(paths.envs.glob(f".tmp-{spec('1.2').key}-*"))
    sweep(paths, wait=False)
    assert not slot[1].exists(), "the leftover of a slot no build holds was not swept"
