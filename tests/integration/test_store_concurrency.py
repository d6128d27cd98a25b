"""The store under real concurrency and real crashes.

Two separate Python processes write to one SQLite file at the same time, and a
process is killed with SIGKILL right after ``add_probe`` returns: the file must hold
every probe in both cases. Real processes, real files, no mocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from envbisect.store import Store

PROBES_PER_WRITER = 200

# Each writer opens the store, says "ready", waits for "go" on stdin so both start
# writing at the same moment, then adds its probes (seq left to the store).
_WRITER = textwrap.dedent(
    """
    import sys
    from envbisect.store import Store
    db, run_id, name, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    with Store(db) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(count):
            store.add_probe(run_id, recipe_hash="rh", env_key=f"{name}-{i}", host=name,
                            outcome="good", metrics={"writer": name, "i": i})
    print("done", flush=True)
    """
)

# Adds one probe, reports its id, then hangs until killed.
_VICTIM = textwrap.dedent(
    """
    import sys, time
    from envbisect.store import Store
    store = Store(sys.argv[1])
    probe_id = store.add_probe(int(sys.argv[2]), recipe_hash="rh", env_key="ek", probe_key="victim-key",
                               host="victim", outcome="bad", resolved={"pkg": "2.0"})
    print(probe_id, flush=True)
    time.sleep(600)
    """
)


def _spawn(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_two_processes_writing_concurrently_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    with Store(db) as store:
        run_id = store.create_run(
            kind="matrix", recipe_path="r.py", recipe_hash="rh", package="pkg", spec=None,
            signature="sig", settings={}, argv=[],
        )
    writers = [_spawn(_WRITER, db, run_id, name, PROBES_PER_WRITER) for name in ("a", "b")]
    try:
        for proc in writers:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in writers:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in writers:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    finally:
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    with Store(db) as store:
        probes = store.probes_for_run(run_id)
    assert len(probes) == 2 * PROBES_PER_WRITER
    for name in ("a", "b"):
        mine = [p for p in probes if p["host"] == name]
        # Each writer's probes are all there, in its own order.
        assert [p["metrics"]["i"] for p in mine] == list(range(PROBES_PER_WRITER))
    # seq is assigned under the write lock: unique and gap-free across both writers.
    assert sorted(p["seq"] for p in probes) == list(range(1, 2 * PROBES_PER_WRITER + 1))


def test_probe_survives_sigkill_right_after_add_probe(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    with Store(db) as store:
        run_id = store.create_run(
            kind="bisect", recipe_path="r.py", recipe_hash="rh", package="pkg", spec=None,
            signature="sig", settings={}, argv=[],
        )
    victim = _spawn(_VICTIM, db, run_id)
    try:
        line = victim.stdout.readline().strip()
        assert line.isdigit(), victim.stderr.read()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        victim.stdout.close()
        victim.stderr.close()
        victim.stdin.close()
    assert victim.returncode == -signal.SIGKILL

    with Store(db) as store:
        found = store.find_reusable("victim-key")[0]
        assert found["id"] == int(line)
        assert found["resolved"] == {"pkg": "2.0"}
        assert [p["id"] for p in store.probes_for_run(run_id)] == [int(line)]
