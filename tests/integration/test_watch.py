"""``bisect watch`` end to end: real daemon processes, a live index, a local GitHub API.

The daemon runs as ``python -m envbisect watch`` subprocesses against a LocalIndex on
127.0.0.1 that the test publishes new ``planted`` releases into between cycles (1.6 and
later carry the regression; 2.1 is built here with it fixed), and a FakeGitHub server
speaking the comments API with pagination and token checking. The recipe appends the
environment it sees to a file, so the test can prove the token never reaches it.
Nothing is mocked.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from support.cli import bisect_cli, cli_env, write_recipe
from support.procs import is_running
from support.github_server import FakeGitHub
from support.wheels import build_wheel

TOKEN = "fake-watch-test-token-0123456789-SECRET"  # not a real token format
ISSUE = "octo/demo#7"

RECIPE_BODY = """
import json, os, sys, time
import planted
with open({dump!r}, "a") as fh:
    fh.write(json.dumps(dict(os.environ)) + "\\n")
if planted.VALUE != 1 and os.path.exists({slow!r}):
    with open({started!r}, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)
sys.exit(0 if planted.VALUE == 1 else 1)
"""


@pytest.fixture
def hub():
    server = FakeGitHub(token=TOKEN, max_per_page=5).start()
    server.add_issue("octo/demo", 7, existing_comments=12)  # three pages before ours
    yield server
    server.stop()


class Scene:
    """One watch setup: index, recipe, config, cache, and the helpers to drive it."""

    def __init__(self, tmp: Path, index, planted_versions, hub: FakeGitHub, every: str = "6h",
                 extra: str = "") -> None:
        self.tmp, self.index, self.hub = tmp, index, hub
        self.by_version = {v.version: v for v in planted_versions}
        self.dump, self.slow, self.started = tmp / "recipe-env.jsonl", tmp / "slow", tmp / "started"
        self.recipe = write_recipe(tmp / "planted_watch.py", RECIPE_BODY.format(
            dump=str(self.dump), slow=str(self.slow), started=str(self.started)))
        self.cache = tmp / "cache"
        self.config = tmp / "bisect.toml"
        self.config.write_text(
            "# watches for the tests\n"
            "[[watch]]\n"
            'name = "planted-watch"\n'
            'recipe = "planted_watch.py"\n'
            'package = "planted"\n'
            f'index-url = "{index.url}"\n'
            f'issue = "{ISSUE}"\n'
            f'every = "{every}"\n' + extra)
        self.env = cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)
        self.outputs: list[str] = []
        self.publish("1.0", "1.1", "1.2")

    def publish(self, *versions: str) -> None:
        for v in versions:
            self.index.add(self.by_version[v].path, upload_time=self.by_version[v].upload_time)

    def once(self, expect: int = 0, force: bool = True) -> subprocess.CompletedProcess:
        proc = bisect_cli("watch", "--once", *(["--force"] if force else []), "--config", str(self.config),
                          "--cache-dir", str(self.cache), cwd=self.tmp, env=self.env, timeout=300)
        self.outputs += [proc.stdout, proc.stderr]
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc

    def daemon(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "envbisect", "watch", "--config", str(self.config),
                                 "--cache-dir", str(self.cache)], cwd=self.tmp, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def state(self) -> dict:
        con = sqlite3.connect(self.cache / "results.db")
        try:
            row = con.execute("select last_seen, state from watches where name = 'planted-watch'").fetchone()
        finally:
            con.close()
        return {"last_seen": row[0], **json.loads(row[1] or "{}")}

    def ours(self) -> list:
        return self.hub.comments_on("octo/demo", 7)


@pytest.fixture
def scene(tmp_path, local_index, planted_versions, hub):
    return Scene(tmp_path, local_index(), planted_versions, hub)


def _fixed_release(dest: Path) -> Path:
    return build_wheel(dest, "planted", "2.1", files={"planted/__init__.py": '__version__ = "2.1"\nVALUE = 1\n'},
                       requires_python=">=3.8")


def test_watch_lifecycle_baseline_regression_dedupe_fix_and_no_token_leak(scene, wheel_dir):
    # 1. First run: the newest release becomes the baseline, nothing is bisected or posted.
    first = scene.once()
    assert "baseline planted 1.2: good" in first.stderr
    state = scene.state()
    assert state["last_seen"] == "1.2" and state["baseline"] == {"version": "1.2", "verdict": "good"}
    assert scene.hub.count("POST") == 0

    # 2. Several new releases at once, newest bad; GitHub is rate limited: the finding is
    #    found, the failure is one clear line with the reset time, and it stays queued.
    scene.publish("1.4", "1.5", "1.6", "1.7", "1.8")
    scene.hub.rate_limited = True
    limited = scene.once(expect=1)
    assert "found: first bad release of planted: 1.6 (last good: 1.5)" in limited.stderr
    assert "rate limit" in limited.stderr and "2030-03-17 17:46:40 UTC" in limited.stderr
    assert len(scene.state()["pending"]) == 1 and scene.ours() == []

    # 3. Next cycle: the queued finding is posted, exactly once, naming the first bad version.
    scene.hub.rate_limited = False
    gets_before = scene.hub.count("GET")
    scene.once()
    [comment] = scene.ours()
    assert "<!-- envbisect:finding regression/planted==1.6/planted_watch -->" in comment.body
    assert "regression in `planted` 1.6" in comment.body and "last good: 1.5" in comment.body
    assert scene.hub.count("GET") - gets_before >= 3, "every page of existing comments must be read"
    assert scene.state()["pending"] == [] and scene.state()["last_seen"] == "1.8"

    # 4. Another bad release: no new finding, nothing duplicated; the listing was revalidated.
    scene.publish("2.0")
    scene.once()
    assert len(scene.ours()) == 1 and scene.hub.count("POST") == 1
    scene.once()
    ours = [h for h in scene.index.log if h.headers.get("User-Agent", "").startswith("envbisect")]
    assert ours[-1].status == 304 and ours[-1].headers.get("If-None-Match"), "polling must be conditional"

    # 5. The database is lost; the same regression is found again from a fresh baseline:
    #    the marker on GitHub makes it an update, never a second comment.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{scene.cache / 'results.db'}{suffix}").unlink(missing_ok=True)
    for v in ("1.4", "1.5", "1.6", "1.8", "2.0"):
        scene.index.remove(scene.by_version[v].path.name)
    scene.once()
    assert scene.state()["baseline"]["version"] == "1.2"
    scene.publish("1.4", "1.5", "1.6", "1.8", "2.0")
    again = scene.once()
    assert "attached regression 1.6 to octo/demo#7: updated" in again.stderr
    assert len(scene.ours()) == 1 and scene.hub.count("POST") == 1 and scene.hub.count("PATCH") == 1

    # 6. A fixed release: a fix comment, separate from the regression one.
    scene.index.add(_fixed_release(wheel_dir))
    fixed = scene.once()
    ours = scene.ours()
    assert len(ours) == 2, fixed.stderr
    assert "<!-- envbisect:finding fix/planted==2.1/planted_watch -->" in ours[1].body
    assert "fixed in `planted` 2.1" in ours[1].body and "last bad: 2.0" in ours[1].body
    assert len(scene.hub.comments_on("octo/demo", 7, user=None)) == 14

    # The token never appears in the database, logs, reports, output, or the recipe's env.
    log_lines = (scene.cache / "logs" / "watch.log").read_text().splitlines()
    assert any("attached fix 2.1 to octo/demo#7: created" in line for line in log_lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT\S+ (INFO|WARNING|ERROR) ", line) for line in log_lines), \
        "one line per event"
    for path in scene.cache.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), f"token leaked into {path}"
    assert all(TOKEN not in text for text in scene.outputs)
    assert all(TOKEN not in c.body for c in scene.hub.comments)
    envs = [json.loads(line) for line in scene.dump.read_text().splitlines()]
    assert len(envs) >= 5
    assert all("GITHUB_TOKEN" not in e and TOKEN not in json.dumps(e) for e in envs)


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"daemon exited early ({proc.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting; daemon stderr:\n{proc.communicate()[1]}")
        time.sleep(0.1)

def test_sigterm_mid_probe_stops_cleanly_second_daemon_refused_restart_finishes(
        tmp_path, local_index, planted_versions, hub):
    scene = Scene(tmp_path, local_index(), planted_versions, hub, every="1s")  # the daemon is due at once
    scene.once()  # baseline 1.2
    scene.publish("1.6")
    scene.slow.write_text("")
    daemon = scene.daemon()
    try:
        _wait_for(scene.started.exists, 120, daemon)
        recipe_pid = int(scene.started.read_text())

        refused = bisect_cli("watch", "--once", "--config", str(scene.config), "--cache-dir", str(scene.cache),
                             cwd=scene.tmp, env=scene.env)
        assert refused.returncode == 75, refused.stderr
        assert f"PID {daemon.pid}" in refused.stderr and refused.stderr.count("\n") == 1

        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert "stopped by SIGTERM" in err
    assert not is_running(recipe_pid), "the recipe must not outlive the daemon"
    assert scene.ours() == [] and scene.state()["last_seen"] == "1.2"

    scene.slow.unlink()
    scene.once()
    [comment] = scene.ours()
    assert "regression in `planted` 1.6" in comment.body and "last good: 1.2" in comment.body
    assert scene.state()["last_seen"] == "1.6"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_daemon_sleeps_until_due_and_stops_on_a_signal_while_idle(scene, sig):
    daemon = scene.daemon()
    log = scene.cache / "logs" / "watch.log"
    try:
        _wait_for(lambda: log.exists() and "next check in" in log.read_text(), 120, daemon)
        daemon.send_signal(sig)
        _, err = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0
    assert "baseline planted 1.2: good" in err
    assert "next check in 5h59m (planted-watch)" in err or "next check in 6h00m (planted-watch)" in err
    assert f"stopped by {sig.name}" in err
    assert not (scene.cache / "watch.pid").exists()


SKIPS_1_6 = """
import sys
import planted
if planted.__version__ == "1.6":
    sys.exit(125)  # cannot test this one here
sys.exit(0 if planted.VALUE == 1 else 1)
"""


def test_inconclusive_bisection_is_logged_not_posted(scene):
    write_recipe(scene.recipe, SKIPS_1_6)
    scene.publish("1.4", "1.5")
    scene.once()  # baseline 1.5, good
    scene.publish("1.6", "1.8")
    proc = scene.once()
    assert "inconclusive" in proc.stderr and "logged only, not posted" in proc.stderr
    assert "changed between 1.5 and 1.8; untestable in between: 1.6" in proc.stderr
    assert scene.ours() == [] and scene.hub.hits == []
    assert scene.state()["pending"] == [] and scene.state()["known"] == {"version": "1.8", "verdict": "bad"}


def test_malformed_config_reports_every_mistake_at_once(tmp_path):
    write_recipe(tmp_path / "ok.py", "import sys\nsys.exit(0)\n")
    config = tmp_path / "bisect.toml"
    config.write_text(
        "[[watch]]\n"                       # 1
        'recipe = "missing.py"\n'           # 2
        'every = "soon"\n'                  # 3
        "\n"                                # 4
        "[[watch]]\n"                       # 5
        'recipe = "ok.py"\n'                # 6
        'isue = "octo/demo#1"\n'            # 7
        'with = ["numpy=="]\n'              # 8
        "\n"                                # 9
        "[[watch]]\n"                       # 10
        'package = "planted"\n')            # 11
    proc = bisect_cli("watch", "--once", "--config", str(config), "--cache-dir", str(tmp_path / "cache"),
                      cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "has 5 mistake(s)" in err
    for expected in (f"{config}:2: watch[1].recipe:", f"{config}:3: watch[1].every:",
                     f"{config}:7: watch[2].isue: unknown key; did you mean 'issue'?",
                     f"{config}:8: watch[2].with:", f"{config}:10: watch[3]: missing required key 'recipe'"):
        assert expected in err, err
    assert not (tmp_path / "cache" / "results.db").exists(), "nothing may run with a broken config"


# ------------------------------------------------------------ a watch that misses nothing


def _status(scene: Scene) -> dict:
    proc = bisect_cli("watch", "status", "--json", "--config", str(scene.config), "--cache-dir", str(scene.cache),
                      cwd=scene.tmp, env=scene.env, check_json=True)
    assert proc.returncode == 0, proc.stderr
    [entry] = proc.json["watches"]
    return entry


def _probed(scene: Scene) -> list[str]:
    """The versions the recipe actually ran for (reused probes are not runs)."""
    con = sqlite3.connect(scene.cache / "results.db")
    try:
        return [v for (v,) in con.execute("select version from probes where reused_from is null")]
    finally:
        con.close()


def _seen(scene: Scene) -> dict[str, str | None]:
    con = sqlite3.connect(scene.cache / "results.db")
    try:
        return dict(con.execute("select version, verdict from watch_releases where watch = 'planted-watch'"))
    finally:
        con.close()


def test_a_large_batch_is_bisected_inside_and_a_later_backport_is_checked(
        tmp_path, local_index, planted_versions, hub, wheel_dir):
    scene = Scene(tmp_path, local_index(), planted_versions, hub, extra="batch-probes = 2\n")
    scene.once()  # baseline 1.2, good
    # Five releases at once, the newest bad: two are probed (1.5 and the newest, 1.9), the
    # change between them is bisected inside the batch; 1.4 is never run.
    scene.publish("1.4", "1.5", "1.6", "1.8", "1.9")
    batch = scene.once()
    assert "new release(s) of planted: 1.4, 1.5, 1.6, 1.8, 1.9" in batch.stderr
    assert "found: first bad release of planted: 1.6 (last good: 1.5)" in batch.stderr, batch.stderr
    assert "1.4" not in _probed(scene) and _probed(scene).count("1.9") == 1
    seen = _seen(scene)
    assert {"1.4", "1.5", "1.6", "1.8", "1.9"} <= set(seen) and seen["1.6"] == "bad" and seen["1.5"] == "good"

    # A backport published after 1.9, below it: new by set membership, probed, and its
    # regression found against the release it follows.
    scene.index.add(build_wheel(wheel_dir, "planted", "1.2.1", requires_python=">=3.8",
                                files={"planted/__init__.py": '__version__ = "1.2.1"\nVALUE = 2\n'}))
    backport = scene.once()
    assert "new release(s) of planted: 1.2.1" in backport.stderr, backport.stderr
    assert "found: first bad release of planted: 1.2.1 (last good: 1.2)" in backport.stderr
    assert _seen(scene)["1.2.1"] == "bad"
    assert [c.body.count("regression in `planted` 1.2.1") for c in scene.ours()] == [0, 1]
    # The recipe changes: the verdicts stored answer another question, so the watch starts
    # over from a new baseline instead of comparing new releases with them.
    scene.recipe.write_text(scene.recipe.read_text() + "# judged differently now\n")
    rebased = scene.once()
    assert "recipe, pins or index changed since the last check; new baseline" in rebased.stderr
    assert "baseline planted 1.9: bad" in rebased.stderr and set(_seen(scene).values()) == {None, "bad"}


def test_regression_and_fix_in_one_batch_then_an_outage_backs_off_and_once_honours_every(
        tmp_path, local_index, planted_versions, hub, wheel_dir):
    scene = Scene(tmp_path, local_index(), planted_versions, hub, every="1h")
    scene.once()  # baseline 1.2, good
    # 1.6 breaks it and 2.1 fixes it, all published between two checks: the newest is good
    # again, like the baseline, and both changes are still found.
    scene.publish("1.4", "1.5", "1.6", "1.8", "2.0")
    scene.index.add(_fixed_release(wheel_dir))
    batch = scene.once()
    assert "planted: regression introduced in 1.6, fixed in 2.1" in batch.stderr, batch.stderr
    assert "first good (fix) release of planted: 2.1 (last bad: 2.0)" in batch.stderr
    bodies = [c.body for c in scene.ours()]
    assert len(bodies) == 2 and "regression in `planted` 1.6" in bodies[0] and "fixed in `planted` 2.1" in bodies[1]
    assert "the regression came in 1.6)" in bodies[1], "the fix names the regression of the same batch"
    entry = _status(scene)
    assert entry["last_verdict"] == {"version": "2.1", "verdict": "good"} and entry["open_findings"] == []
    assert entry["last_error"] is None and entry["failures"] == 0

    # The index answers 503 to the listing and its retries: the error is kept, the next
    # check backs off past the interval, and the status shows both.
    scene.index.fail_next(4, status=503)
    failed = scene.once(expect=1)
    assert "check failed (1 in a row)" in failed.stderr and "HTTP 503" in failed.stderr
    entry = _status(scene)
    assert entry["failures"] == 1 and "HTTP 503" in entry["last_error"]
    last, due = (datetime.fromisoformat(entry[k]) for k in ("last_check", "next_check"))
    assert due - last > timedelta(hours=1)
    table = bisect_cli("watch", "status", "--config", str(scene.config), "--cache-dir", str(scene.cache),
                       cwd=scene.tmp, env={**scene.env, "COLUMNS": "250"})
    assert table.returncode == 0 and "1 failed check(s): cannot reach" in table.stdout, table.stdout
    assert "2.1 good" in table.stdout

    # --once honours the back-off (nothing is asked of the index); --force checks now.
    hits = len(scene.index.log)
    skipped = scene.once(force=False)
    assert "[planted-watch] not due for 1h59m" in skipped.stderr or "not due for 2h00m" in skipped.stderr, \
        skipped.stderr
    assert len(scene.index.log) == hits
    forced = scene.once()
    assert "no new release of planted (newest 2.1)" in forced.stderr
    entry = _status(scene)
    assert entry["failures"] == 0 and entry["last_error"] is None and entry["due_in_s"] > 3000

    # The known-good newest release (2.1) is yanked and a bad 2.2 appears: 2.1 can no longer
    # be bisected from, so 2.2 is compared with the nearest judged release still listed
    # (2.0, bad) instead of failing the same way on every cycle.
    scene.index.add(_fixed_release(wheel_dir), yanked="broken build")
    scene.index.add(build_wheel(wheel_dir, "planted", "2.2", requires_python=">=3.8",
                                files={"planted/__init__.py": '__version__ = "2.2"\nVALUE = 2\n'}))
    after_yank = scene.once()
    assert "new release(s) of planted: 2.2" in after_yank.stderr and "check failed" not in after_yank.stderr
    assert "[planted-watch] 2.2: bad" in after_yank.stderr and len(scene.ours()) == 2


# Fails for the wrong reason from 1.6 on (an out-of-memory exit 1, no ValueError).
WRONG_REASON = """
import sys
import planted
if planted.VALUE != 1:
    print("RuntimeError: CUDA out of memory", file=sys.stderr)
    sys.exit(1)
"""

# Always exits 0; one output of two changes from 1.6 on.
DRIFTING_OUTPUTS = """
import json, os, pathlib
import planted
out = pathlib.Path(os.environ["ENVBISECT_OUTPUTS"])
(out / "value.json").write_text(json.dumps([0.5 * planted.VALUE, 1.0]))
(out / "const.json").write_text(json.dumps(3.25))
"""


def test_a_wrong_reason_failure_is_not_reported_under_the_recipes_signature(scene):
    write_recipe(scene.recipe, WRONG_REASON, extra_tool='signature-exception = "ValueError"')
    scene.once()  # baseline 1.2, good
    scene.publish("1.5", "1.6")
    proc = scene.once()
    assert "1.6: skip (failed, but not with the signature uncaught ValueError (exit 1))" in proc.stderr, proc.stderr
    assert "bisecting" not in proc.stderr and "found" not in proc.stderr
    assert scene.hub.count("POST") == 0 and scene.state()["pending"] == []
    assert _seen(scene)["1.6"] == "untestable" and _seen(scene)["1.5"] == "good"


def test_a_watch_with_a_reference_reports_the_release_whose_outputs_drift(scene):
    """``reference = "1.0"``: every release is judged by its outputs against 1.0's (the
    recipe exits 0 throughout), and the bisection a change starts judges the same way."""
    write_recipe(scene.recipe, DRIFTING_OUTPUTS, extra_tool='reference = "1.0"')
    first = scene.once()
    assert "baseline planted 1.2: good" in first.stderr, first.stderr
    scene.publish("1.4", "1.5", "1.6")
    proc = scene.once()
    assert "found: first bad release of planted: 1.6 (last good: 1.5)" in proc.stderr, proc.stderr
    [comment] = scene.ours()
    assert "**reference:** 1.0" in comment.body and "**diverged outputs:** value" in comment.body, comment.body
