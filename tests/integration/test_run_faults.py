"""Faults during ``bisect run``: skips, hangs, forked children, crashes, flakiness,
SIGKILL of envbisect itself, and two processes building one environment at once.

All real: the CLI as a subprocess, uv installs from the planted local index, recipes
as subprocesses. Recipes read ``PLANT_DIR`` (a plain variable, so the scrubbed recipe
environment keeps it) for files they coordinate through.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time


import pytest

from support.cli import bisect_cli, cli_env, write_recipe
from support.procs import is_running


def _run(recipe, index, cache, *extra, env=None):
    return bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(cache), "--json",
                      *extra, cwd=cache.parent, env=env, check_json=True)


def test_exit_125_is_stepped_around_and_reported(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import sys, planted
        if planted.__version__ in ("1.5", "1.2"):
            print("no GPU here"); sys.exit(125)
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    proc = _run(recipe, planted_index, tmp_path / "cache")
    res = proc.json
    # 1.5 cannot be tested, so the change lies somewhere in (1.4, 1.6]: stated as a range.
    assert proc.returncode == 4, proc.stderr
    assert res["status"] == "inconclusive"
    assert (res["last_good"], res["first_bad"]) == ("1.4", "1.6")
    assert res["untestable_between"] == ["1.5"]
    assert {"version": "1.5", "reason": "exit 125: cannot test here"} in res["untestable"]


def test_hang_times_out_then_counts_as_bad_under_regress_crash(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import sys, time, planted
        if planted.VALUE == 2:
            time.sleep(600)
        sys.exit(0)
    """, timeout=2)
    cache = tmp_path / "cache"
    default = _run(recipe, planted_index, cache)
    # Timeouts are untestable by default: the newer releases could not be tested, which is
    # not the same as "not reproduced" (they were never seen to pass).
    assert (default.json["status"], default.json["untestable_edge"]) == ("inconclusive", "new")
    assert default.json["last_good"] == "1.5" and default.returncode == 4
    assert any("timed out" in u["reason"] for u in default.json["untestable"])
    assert "newer than 1.5 could not be tested" in default.json["hint"]
    crash = _run(recipe, planted_index, cache, "--regress", "crash")
    assert crash.returncode == 0
    assert (crash.json["last_good"], crash.json["first_bad"]) == ("1.5", "1.6")
    assert crash.json["executed"] == 0, "timeouts recorded by the first run are re-judged, not re-run"


def test_forked_child_that_hangs_does_not_block_or_outlive_the_probe(tmp_path, planted_index):
    pids = tmp_path / "pids"
    pids.mkdir()
    recipe = write_recipe(tmp_path / "r.py", """
        import os, sys, time, planted
        pid = os.fork()
        if pid == 0:
            open(os.path.join(os.environ["PLANT_DIR"], str(os.getpid())), "w").close()
            time.sleep(600)
            os._exit(0)
        sys.exit(0 if planted.VALUE == 1 else 1)
    """, timeout=30)
    proc = _run(recipe, planted_index, tmp_path / "cache", env=cli_env(PLANT_DIR=str(pids)))
    assert proc.json["first_bad"] == "1.6"
    children = [int(p.name) for p in pids.iterdir()]
    assert children
    for pid in children:
        assert not is_running(pid), f"forked child {pid} outlived its probe"

def test_segfault_is_an_error_and_crash_mode_counts_it_bad(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import os, signal, sys, planted
        if planted.VALUE == 2:
            os.kill(os.getpid(), signal.SIGSEGV)
        sys.exit(0)
    """)
    cache = tmp_path / "cache"
    res = _run(recipe, planted_index, cache, "--regress", "crash").json
    assert (res["status"], res["first_bad"]) == ("found", "1.6")
    bad = next(p for p in res["probes"] if p["version"] == "1.6")
    assert bad["outcome"] == "error" and bad["verdict"] == "bad" and "SIGSEGV" in bad["reason"]
    err = _run(recipe, planted_index, cache, "--regress", "error").json
    assert err["first_bad"] == "1.6"


def test_flaky_version_is_reported_and_never_a_silent_boundary(tmp_path, planted_index):
    state = tmp_path / "state"
    state.mkdir()
    recipe = write_recipe(tmp_path / "r.py", """
        import os, sys, planted
        if planted.__version__ == "1.6":
            counter = os.path.join(os.environ["PLANT_DIR"], "n")
            n = int(open(counter).read()) if os.path.exists(counter) else 0
            open(counter, "w").write(str(n + 1))
            sys.exit(n % 2)          # alternates good / bad
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    proc = _run(recipe, planted_index, tmp_path / "cache", "--retries", "1", env=cli_env(PLANT_DIR=str(state)))
    res = proc.json
    assert res["flaky"] == ["1.6"]
    assert res["first_bad"] != "1.6" and res["last_good"] == "1.5"
    assert res["status"] == "inconclusive" and "1.6" in res["untestable_between"]


def _count_probes(db):
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("select count(*) from probes where outcome is not null").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def test_sigkill_midway_then_rerun_resumes_without_rerunning_recorded_probes(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import sys, time, planted
        time.sleep(0.4)
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "envbisect", "run", str(recipe), "--index-url", planted_index.url,
           "--cache-dir", str(cache), "--json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count_probes(cache / "results.db") < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded = _count_probes(cache / "results.db")
    assert recorded >= 2
    again = _run(recipe, planted_index, cache)
    res = again.json
    assert again.returncode == 0 and res["first_bad"] == "1.6"
    assert res["run_id"] == 1, "the killed run is resumed, not started afresh"
    assert len(res["probes"]) - res["executed"] >= 2, "probes recorded before the kill are reused"
    con = sqlite3.connect(cache / "results.db")
    executed = con.execute("select version, count(*) from probes where reused_from is null group by version").fetchall()
    assert all(n == 1 for _v, n in executed), executed
    leftovers = [p.name for p in (cache / "envs").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_two_processes_building_the_same_env_wait_for_each_other(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import sys, planted
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "envbisect", "check", str(recipe), "--with", "planted==1.4",
           "--index-url", planted_index.url, "--cache-dir", str(cache), "--json"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    envs = [p for p in (cache / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 1
    assert (envs[0] / "envbisect-env.json").is_file()


@pytest.mark.parametrize("sig, code, line", [
    (signal.SIGINT, 130, "interrupted; run the same command again to resume where it stopped"),
    # CI cancellations, `timeout` and closed SSH sessions send these: handled like Ctrl-C.
    (signal.SIGTERM, 143, "interrupted by SIGTERM; run the same command again to resume where it stopped"),
    (signal.SIGHUP, 129, "interrupted by SIGHUP; run the same command again to resume where it stopped"),
])
def test_a_stop_signal_marks_the_run_interrupted_kills_the_recipe_and_the_rerun_resumes(
        tmp_path, planted_index, sig, code, line):
    pids = tmp_path / "pids"
    pids.mkdir()
    recipe = write_recipe(tmp_path / "r.py", """
        import os, sys, time, planted
        open(os.path.join(os.environ["PLANT_DIR"], str(os.getpid())), "w").close()
        hang = os.environ.get("HANG_FROM_THIRD") and len(os.listdir(os.environ["PLANT_DIR"])) >= 3
        time.sleep(600 if hang else 0.5)
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "envbisect", "run", str(recipe), "--index-url", planted_index.url,
           "--cache-dir", str(cache), "--json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(PLANT_DIR=str(pids), HANG_FROM_THIRD="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 3 and time.monotonic() < deadline:  # the third probe hangs
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (out, err)
    assert [ln for ln in err.splitlines() if ln.strip()] == [line]
    assert out == ""
    hung = max(pids.iterdir(), key=lambda p: p.stat().st_mtime)
    assert not is_running(int(hung.name)), "the interrupted probe's recipe must be killed"
    con = sqlite3.connect(cache / "results.db")
    assert con.execute("select status from runs where id = 1").fetchone()[0] == "interrupted"
    con.close()
    again = _run(recipe, planted_index, cache, env=cli_env(PLANT_DIR=str(pids)))
    assert again.returncode == 0 and again.json["run_id"] == 1 and again.json["first_bad"] == "1.6"
    assert len(again.json["probes"]) - again.json["executed"] == 2, "the two finished probes are reused"
