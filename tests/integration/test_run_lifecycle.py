"""The life of a run: claimed by one process, killed, resumed, stopped by the index.

Each test names the defect of an earlier version it guards against. All real: the CLI
as a subprocess, uv resolving and installing from the planted local index, the store
read back with the standard library's sqlite3 (what is on disk, not what envbisect says
is on disk), and real processes as run owners.

The planted search probes 1.0, 2.0, 1.5, 1.8, 1.6 (in that order) and answers 1.5/1.6.
Recipes that need a window for a signal sleep ``PROBE_SLEEP`` seconds per probe and
drop a marker named after the version in ``PLANT_DIR`` as they start, so a test can act
while a chosen probe's recipe runs (when the index is not being asked anything).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from envbisect.driver import STALE_AFTER_S, owner_alive, this_owner
from envbisect.errors import AlreadyRunning
from envbisect.store import Store
from support.cli import bisect_cli, cli_env, write_recipe
from support.db import query, rows

#: Sleeps PROBE_SLEEP seconds per probe; a marker per started probe in PLANT_DIR.
SLOW_BODY = """
import os, sys, time, planted
open(os.path.join(os.environ["PLANT_DIR"], planted.__version__), "w").close()
time.sleep(float(os.environ.get("PROBE_SLEEP", "1")))
sys.exit(0 if planted.VALUE == 1 else 1)
"""

WAIT_S = 120  # generous ceiling for anything a run does here (each takes seconds)


# --- helpers ------------------------------------------------------------------------


class Lab:
    """One test's recipe, cache, marker directory and the ``bisect run`` command line."""

    def __init__(self, tmp_path: Path, index_url: str, *, sleep: float = 1.0, **env: str) -> None:
        self.tmp = tmp_path
        self.cache = tmp_path / "cache"
        self.db = self.cache / "results.db"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.recipe = write_recipe(tmp_path / "r.py", SLOW_BODY)
        self.index_url = index_url
        self.env = cli_env(PLANT_DIR=str(self.marks), PROBE_SLEEP=str(sleep), **env)

    @property
    def argv(self) -> list[str]:
        return ["run", str(self.recipe), "--index-url", self.index_url, "--cache-dir", str(self.cache), "--json"]

    def start(self) -> subprocess.Popen:
        """``bisect run`` in the background (output piped, as text)."""
        return subprocess.Popen([sys.executable, "-m", "envbisect", *self.argv], cwd=self.tmp, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """``bisect ARGS`` to completion (default: the run command), stdout parsed as JSON."""
        return bisect_cli(*(args or self.argv), cwd=self.tmp, env=self.env, timeout=WAIT_S, check_json=True)

    def started(self) -> list[str]:
        """Versions whose recipe has started (in any run of this lab)."""
        return sorted(p.name for p in self.marks.iterdir())

    def wait_until(self, what: str, ready, proc: subprocess.Popen | None = None) -> None:
        """Poll ``ready()`` until it holds; fail if ``proc`` exits first or time runs out."""
        deadline = time.monotonic() + WAIT_S
        while not ready():
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run exited {proc.returncode} before {what}:\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_for_third_recipe(self, proc: subprocess.Popen) -> None:
        """Two probes recorded and the third one's recipe sleeping: the index is idle."""
        self.wait_until("two recorded probes and a third running",
                        lambda: len(rows(self.db)) >= 2 and len(self.started()) >= 3, proc)


def runs(db: Path) -> list[dict]:
    return query(db, "SELECT * FROM runs ORDER BY id")


def assert_one_row_per_probe(db: Path, run_id: int, result: dict) -> list[dict]:
    """The run's rows: one per probed candidate, no (seq, attempt) twice, no version twice."""
    mine = rows(db, run_id)
    pairs = Counter((r["seq"], r["attempt"]) for r in mine)
    assert all(n == 1 for n in pairs.values()), f"(seq, attempt) recorded twice: {pairs}"
    versions = Counter(r["version"] for r in mine)
    assert all(n == 1 for n in versions.values()), f"a version recorded twice: {versions}"
    assert len(mine) == len(result["probes"]), (mine, result["probes"])
    assert set(versions) == {p["version"] for p in result["probes"]}
    return mine


def untestable_rows(db: Path, run_id: int) -> list[dict]:
    return [r for r in rows(db, run_id)
            if r["verdict"] == "untestable" or (r["reason"] or "").startswith("install failed")]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


# --- 1. two identical runs at once ---------------------------------------------------


def test_two_identical_concurrent_runs_never_share_a_run_or_duplicate_probes(tmp_path, planted_index):
    """Guards: both processes found the same unfinished run (no atomic claim, no owner
    check), worked on it together and numbered their probes from the same ``MAX(seq)``,
    so the run got two rows per candidate and two rows with one (seq, attempt)."""
    lab = Lab(tmp_path, planted_index.url)
    procs = [lab.start(), lab.start()]  # back to back: both are starting before either claims
    assert runs(lab.db) == [], "the race is not real: a run was claimed before the second process started"
    deadline = time.monotonic() + WAIT_S
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = next((p for p in procs if p.poll() is not None), None)
    assert first is not None, "neither run finished"
    other = procs[1 - procs.index(first)]
    other_alive_then = other.poll() is None
    outs = [p.communicate(timeout=WAIT_S) for p in procs]
    codes = [p.returncode for p in procs]

    if 75 in codes:  # what the driver does: the second claim is refused at once
        loser, winner = (0, 1) if codes[0] == 75 else (1, 0)
        assert procs[loser] is first and other_alive_then, "refused while the winner works, not after it"
        assert codes[winner] == 0, outs[winner]
        result = json.loads(outs[winner][0])
        line, = error_lines(outs[loser][1])
        assert line.startswith(f"error: run {result['run_id']} asks the same question and is still in progress")
        assert f"PID {procs[winner].pid} " in line
        assert outs[loser][0] == ""
        results = [result]
    else:  # two runs are acceptable, as long as they are two
        assert codes == [0, 0], outs
        results = [json.loads(out) for out, _ in outs]
        assert results[0]["run_id"] != results[1]["run_id"], "two processes worked on one run"

    for result in results:
        assert (result["last_good"], result["first_bad"]) == ("1.5", "1.6")
        assert_one_row_per_probe(lab.db, result["run_id"], result)
    assert {r["id"] for r in runs(lab.db)} == {r["run_id"] for r in results}, "a stray run was left behind"
    assert query(lab.db, "SELECT run_id, seq, attempt FROM probes GROUP BY 1, 2, 3 HAVING COUNT(*) > 1") == []
    assert len(rows(lab.db)) == sum(len(r["probes"]) for r in results)


# --- 2. SIGKILL, then the same command again -------------------------------------------


def test_sigkill_then_resume_leaves_exactly_one_row_per_probe(tmp_path, planted_index):
    """Guards: the resumed run copied its own earlier rows into itself again (or deleted
    and re-inserted them), so history counted a probe twice and ``bisect show`` listed a
    version twice, and the rerun probed recorded candidates again."""
    lab = Lab(tmp_path, planted_index.url, sleep=0.5)
    proc = lab.start()
    lab.wait_until("two recorded probes", lambda: len(rows(lab.db)) >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    killed, = runs(lab.db)
    before = rows(lab.db, killed["id"])
    assert killed["status"] == "running" and len(before) >= 2

    again = lab.run()
    res = again.json
    assert again.returncode == 0, again.stderr
    assert res["run_id"] == killed["id"], "the killed run is resumed, not started afresh"
    assert (res["last_good"], res["first_bad"]) == ("1.5", "1.6")
    after = assert_one_row_per_probe(lab.db, killed["id"], res)
    assert len(runs(lab.db)) == 1
    assert res["executed"] == len(res["probes"]) - len(before), "recorded probes are not run again"
    by_id = {r["id"]: r for r in after}
    for old in before:  # the same rows, untouched: not deleted and added again
        assert old["id"] in by_id, f"row {old['id']} ({old['version']}) vanished on resume"
        assert {k: by_id[old["id"]][k] for k in ("seq", "attempt", "version", "outcome", "created_at")} == \
            {k: old[k] for k in ("seq", "attempt", "version", "outcome", "created_at")}
    assert all(r["reused_from"] is None for r in after), "a run reused its own rows"

    history = lab.run("history", "--cache-dir", str(lab.cache), "--json").json
    entry, = [h for h in history if h["id"] == killed["id"]]
    assert (entry["status"], entry["probe_count"]) == ("done", len(res["probes"]))
    shown = lab.run("show", str(killed["id"]), "--cache-dir", str(lab.cache), "--json").json
    listed = Counter(r["version"] for r in shown["probe_rows"])
    assert listed == Counter(p["version"] for p in res["probes"]), listed
    assert all(n == 1 for n in listed.values())


# --- 3. the index goes away mid-run -----------------------------------------------------


def test_index_outage_interrupts_the_run_and_records_no_verdict(tmp_path, planted_index):
    """Guards: a refused connection while resolving or installing was taken for an
    install failure, so every remaining candidate was recorded "untestable: install
    failed" (after uv's retries on each, some 340 s) and the run finished with a wrong,
    stored answer that the rerun then reused."""
    index = planted_index.index
    lab = Lab(tmp_path, planted_index.url)
    proc = lab.start()
    lab.wait_for_third_recipe(proc)
    port = index.port
    index.stop()
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 6, (out, err)
    line, = error_lines(err)
    assert line.startswith("error: ") and ("stopped answering" in line or "cannot reach" in line), line
    assert "again" in line and "resume" in line, line
    run, = runs(lab.db)
    assert run["status"] == "interrupted"
    recorded = rows(lab.db, run["id"])
    assert untestable_rows(lab.db, run["id"]) == [], "an outage was recorded as a verdict"
    versions = [r["version"] for r in recorded]
    # 1.8 is recorded only when its build ahead finished before the outage: a complete
    # environment, so a true verdict. What must never be stored is a verdict the outage made.
    assert versions in (["1.0", "2.0", "1.5"], ["1.0", "2.0", "1.5", "1.8"]), versions
    truth = {"1.0": "good", "2.0": "bad", "1.5": "good", "1.8": "bad"}
    assert {r["version"]: r["verdict"] for r in recorded} == {v: truth[v] for v in versions}

    index.start(port=port)  # the index is back, at the same URL: the same question
    assert index.url == planted_index.url
    again = lab.run()
    assert again.returncode == 0, again.stderr
    assert again.json["run_id"] == run["id"]
    assert (again.json["last_good"], again.json["first_bad"]) == ("1.5", "1.6")
    assert again.json["executed"] == len(again.json["probes"]) - len(recorded)
    assert_one_row_per_probe(lab.db, run["id"], again.json)
    assert untestable_rows(lab.db, run["id"]) == []


# --- 4. a burst of 503s while resolving ------------------------------------------------


def test_503_burst_that_outlasts_uvs_retries_interrupts_the_run(tmp_path, planted_index):
    """Guards: a 503 that uv gave up on ("Request failed after N retries ... 503 Service
    Unavailable") was recorded as the candidate's install failure, an untestable verdict
    that came from the index, not the release.

    uv retries 3 times by default (4 requests, about 6 s); ``UV_HTTP_RETRIES=1`` (which the
    installers' environment keeps) makes it 2 requests, so a burst of exactly 2 errors
    exhausts them and leaves nothing for the rerun. Builds ahead are off: a prefetch would
    meet the burst first (and stay silent, as prefetches do)."""
    index = planted_index.index
    lab = Lab(tmp_path, planted_index.url, UV_HTTP_RETRIES="1", ENVBISECT_PREFETCH="0")
    proc = lab.start()
    lab.wait_for_third_recipe(proc)
    hits = len(index.log)
    index.fail_next(2, 503)  # the next requests: the resolve of the fourth candidate (1.8)
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 6, (out, err)
    burst = index.log[hits:]
    assert [h.status for h in burst] == [503, 503], burst
    assert all(h.path.startswith("/simple/planted") for h in burst), f"the burst missed the resolve: {burst}"
    line, = error_lines(err)
    assert line.startswith("error: the package index") and "stopped answering" in line and "503" in line, line
    run, = runs(lab.db)
    assert run["status"] == "interrupted"
    assert untestable_rows(lab.db, run["id"]) == []
    assert [r["version"] for r in rows(lab.db, run["id"])] == ["1.0", "2.0", "1.5"]

    again = lab.run()  # the burst is over
    assert again.returncode == 0, again.stderr
    assert (again.json["run_id"], again.json["first_bad"]) == (run["id"], "1.6")
    assert untestable_rows(lab.db, run["id"]) == []


# --- 5. who owns a run: real processes -------------------------------------------------

#: Claims a run (store path, run fields as JSON) as this process, with its start time
#: shifted by argv[3] seconds, prints the run id and whether it resumed, then sleeps argv[4].
CLAIMER = """
import json, sys, time
from envbisect.driver import owner_alive, this_owner
from envbisect.store import Store
owner = this_owner()
owner["started"] += float(sys.argv[3])
with Store(sys.argv[1]) as store:
    row, resumed = store.claim_run(owner=owner, is_alive=owner_alive, snapshot=None, **json.loads(sys.argv[2]))
print(row["id"], resumed, flush=True)
time.sleep(float(sys.argv[4]))
"""

RUN_FIELDS = dict(kind="bisect", recipe_path="r.py", recipe_hash="0" * 16, package="planted", spec=None,
                  signature="same-question", settings={}, argv=["run", "r.py"])


class Claimer:
    """A real process that claims the run and then lives on for ``live_s`` seconds."""

    def __init__(self, db: Path, *, live_s: float = 0.0, started_shift: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(db), json.dumps(RUN_FIELDS), str(started_shift), str(live_s)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the claimer failed: {self.proc.communicate()[1]}")
        run_id, resumed = line.split()
        self.run_id, self.resumed = int(run_id), resumed == "True"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


def claim(db: Path) -> tuple[dict, bool]:
    """Claim the run as this (test) process."""
    with Store(db) as store:
        return store.claim_run(owner=this_owner(), is_alive=owner_alive, snapshot=None, **RUN_FIELDS)


def test_run_of_an_exited_owner_is_resumed_by_the_next_claim(tmp_path):
    """Guards: an unfinished run stayed "in progress" for good once its process died
    (or, the other way round, any unfinished run was taken over, owner alive or not)."""
    db = tmp_path / "results.db"
    gone = Claimer(db)
    gone.stop()  # exited and reaped
    assert not gone.resumed
    row, resumed = claim(db)
    assert resumed and row["id"] == gone.run_id
    assert row["owner"]["pid"] == os.getpid()


def test_run_of_a_live_owner_is_refused(tmp_path):
    """Guards: a second process with the same question joined the live run and both
    wrote its probes."""
    db = tmp_path / "results.db"
    live = Claimer(db, live_s=60)
    try:
        with pytest.raises(AlreadyRunning) as refused:
            claim(db)
        assert refused.value.exit_code == 75
        assert f"run {live.run_id} asks the same question and is still in progress (PID {live.proc.pid} " \
            in str(refused.value)
        assert len(str(refused.value).splitlines()) == 1
        with Store(db) as store:
            assert store.get_run(live.run_id)["owner"]["pid"] == live.proc.pid, "the refused claim took the run"
    finally:
        live.stop()
    row, resumed = claim(db)  # once it is gone, the run is ours
    assert resumed and row["id"] == live.run_id


def test_run_of_a_recycled_pid_is_resumed(tmp_path):
    """Guards: ownership by pid alone, so a run whose process died was refused for as
    long as its pid was reused by some unrelated live process."""
    db = tmp_path / "results.db"
    stranger = Claimer(db, live_s=60, started_shift=-100)  # the recorded start is not this process's
    try:
        assert psutil.pid_exists(stranger.proc.pid)
        row, resumed = claim(db)
        assert resumed and row["id"] == stranger.run_id
    finally:
        stranger.stop()


@pytest.mark.parametrize("beat_age_s, refused", [(5.0, True), (STALE_AFTER_S + 60, False)])
def test_run_owned_on_another_host_goes_by_its_heartbeat(tmp_path, beat_age_s, refused):
    """Guards: a run owned on another host (a shared cache directory) was judged by a pid
    that means nothing here; its heartbeat decides."""
    db = tmp_path / "results.db"
    row, _ = claim(db)
    beat = (datetime.now(timezone.utc) - timedelta(seconds=beat_age_s)).isoformat()
    owner = {"host": socket.gethostname() + "-elsewhere", "pid": os.getpid(), "started": 0.0}
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE runs SET owner = ?, heartbeat = ? WHERE id = ?", (json.dumps(owner), beat, row["id"]))
    con.close()
    if refused:
        with pytest.raises(AlreadyRunning, match=f"run {row['id']} asks the same question"):
            claim(db)
    else:
        again, resumed = claim(db)
        assert resumed and again["id"] == row["id"]
