"""``/envbisect run`` requests in issue comments, served by the real daemon.

The daemon runs as ``python -m envbisect watch`` subprocesses (``--once``, and one long-
running daemon killed with SIGKILL mid-request) against the loopback GitHub server
(comment listing with ``since=`` and ETags, reactions, edits) and a loopback package index
serving the planted releases (1.6 and later are bad). The servers, the index and the cache
directory are shared by the whole module, so later tests reuse the environments built by
the first. The request's recipe writes its environment and every readable ancestor's
``/proc/<pid>/cmdline`` and ``environ`` to a file, so the tests can prove the token never
reaches it. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import bisect_cli, cli_env
from support.github_server import FakeGitHub
from support.index_server import LocalIndex
from support.procs import is_running

TOKEN = "fake-listen-test-token-0123456789-SECRET"  # not a real token format
REPO = "octo/demo"

RECIPE = """# /// script
# dependencies = ["planted"]
# [tool.envbisect]
# timeout = 120
# ///
# {tag}
import json, os, sys, time
import planted
seen = {{"environ": dict(os.environ), "ancestors": []}}
pid = os.getppid()
while pid > 1:
    entry = {{"pid": pid}}
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{{pid}}/{{name}}", "rb") as fh:
                entry[name] = fh.read().decode("utf-8", "replace")
        except OSError as exc:
            entry[name] = f"unreadable: {{exc}}"
    seen["ancestors"].append(entry)
    try:
        with open(f"/proc/{{pid}}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
with open({dump!r}, "a") as fh:
    fh.write(json.dumps(seen) + "\\n")
if planted.VALUE != 1 and os.path.exists({slow!r}):
    with open({started!r}, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)
sys.exit(0 if planted.VALUE == 1 else 1)
"""


class Scene:
    """The shared setup: servers, config, cache, and helpers to drive the daemon."""

    def __init__(self, tmp: Path, hub: FakeGitHub, index: LocalIndex) -> None:
        self.tmp, self.hub, self.index = tmp, hub, index
        self.dump, self.slow, self.started = tmp / "recipe-env.jsonl", tmp / "slow", tmp / "started"
        self.cache = tmp / "cache"
        self.config = tmp / "bisect.toml"
        self.config.write_text(
            "[[listen]]\n"
            f'repository = "{REPO}"\n'
            'authors = ["carol"]\n'
            'labels = ["regression"]\n'
            f'index-url = "{index.url}"\n'
            'poll = "1s"\n'
            'timeout = "60s"\n'
            "max-probes = 8\n"
            "[[listen]]\n"
            'repository = "octo/tight"\n'
            f'index-url = "{index.url}"\n'
            "max-probes = 1\n")
        self.env = cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)

    def recipe(self, tag: str = "plain") -> str:
        return RECIPE.format(tag=tag, dump=str(self.dump), slow=str(self.slow), started=str(self.started))

    def request(self, issue: int, user: str, association: str, options: str, tag: str = "plain") -> int:
        body = f"/envbisect run {options}\n\nPlease bisect this:\n```python\n{self.recipe(tag)}```\n"
        return self.hub.add_comment(REPO, issue, body, user=user, association=association).id

    def once(self, expect: int = 0) -> subprocess.CompletedProcess:
        proc = bisect_cli("watch", "--once", "--config", str(self.config), "--cache-dir", str(self.cache),
                          cwd=self.tmp, env=self.env, timeout=300)
        assert proc.returncode == expect, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def answers(self, comment_id: int) -> list:
        marker = f"<!-- envbisect:request {REPO}/{comment_id} -->"
        return [c for c in list(self.hub.comments) if marker in c.body]

    def runs(self) -> int:
        return len(self.dump.read_text().splitlines()) if self.dump.exists() else 0

    def request_row(self, comment_id: int) -> dict:
        con = sqlite3.connect(self.cache / "results.db")
        con.row_factory = sqlite3.Row
        try:
            row = con.execute("select * from listen_requests where comment_id = ?", [comment_id]).fetchone()
        finally:
            con.close()
        return dict(row) if row else {}


@pytest.fixture(scope="module")
def scene(tmp_path_factory, planted_versions):
    tmp = tmp_path_factory.mktemp("listen")
    hub = FakeGitHub(token=TOKEN, max_per_page=4).start()
    for number in (7, 8, 9):
        hub.add_issue(REPO, number, existing_comments=1)
    hub.add_issue("octo/tight", 1)
    hub.labels[("octo", "demo", 7)] = ["bug", "regression"]
    hub.labels[("octo", "demo", 8)] = ["regression"]
    index = LocalIndex(tmp / "index").start()
    for release in planted_versions:
        index.add(release.path, upload_time=release.upload_time,
                  yanked="planted: broken build" if release.yanked else False)
    yield Scene(tmp, hub, index)
    index.stop()
    hub.stop()


def test_allowed_request_runs_once_answers_in_place_and_never_sees_the_token(scene):
    request = scene.request(7, "maria", "MEMBER", "--package planted --good 1.4 --bad 1.8")
    proc = scene.once()
    [answer] = scene.answers(request)
    assert "<!-- envbisect:state done -->" in answer.body
    assert "first bad release of planted: 1.6" in answer.body and "last good: 1.5" in answer.body
    digest = hashlib.sha256(scene.recipe().encode()).hexdigest()
    assert digest[:16] in answer.body and "planted.VALUE != 1" in answer.body, "the recipe is shown with its hash"
    assert scene.hub.reactions_on(request) == ["eyes", "rocket"]
    assert scene.hub.count("PATCH") >= 2, "the answer is updated in place as probes finish"
    row = scene.request_row(request)
    assert row["status"] == "done" and row["recipe_hash"] == digest and row["recipe"] == scene.recipe()
    assert "request by maria (MEMBER)" in proc.stderr

    # The recipe saw neither the token in its environment nor in any ancestor's /proc.
    dumped = scene.dump.read_text()
    assert scene.runs() >= 3 and TOKEN not in dumped
    ancestors = [a for line in dumped.splitlines() for a in json.loads(line)["ancestors"]]
    daemon = [a for a in ancestors if "envbisect" in a["cmdline"] and "watch" in a["cmdline"]]
    assert daemon and not daemon[0]["environ"].startswith("unreadable"), "the check must have read the daemon"
    assert not any("GITHUB_TOKEN" in json.loads(line)["environ"] for line in dumped.splitlines())

    for stored in (scene.cache / "results.db", scene.cache / "logs" / "watch.log"):
        assert TOKEN.encode() not in stored.read_bytes(), f"the token reached {stored.name}"

    # Delivered again (an unchanged listing, then the database lost): nothing runs twice.
    writes, runs = scene.hub.count("POST") + scene.hub.count("PATCH"), scene.runs()
    scene.once()  # lists the answer's last edit: the cursor moves past it
    scene.once()  # nothing newer: the listing's ETag is kept
    scene.once()
    assert scene.hub.hits[-1].status == 304, "an unchanged repository must be polled conditionally"
    for name in ("results.db", "results.db-wal", "results.db-shm"):
        (scene.cache / name).unlink(missing_ok=True)
    again = scene.once()
    assert "already answered" in again.stderr
    assert len(scene.answers(request)) == 1 and scene.runs() == runs
    assert scene.hub.count("POST") + scene.hub.count("PATCH") == writes


def test_disallowed_author_gets_one_polite_reply_and_nothing_runs(scene):
    runs = scene.runs()
    # A marker in someone else's comment is not trusted: it neither silences the refusal
    # nor passes for the answer of a maintainer's request.
    scene.hub.add_comment(REPO, 8, "<!-- envbisect:denied octo/demo/8/mallory -->", user="mallory")
    first = scene.request(8, "mallory", "NONE", "--package planted")
    scene.request(8, "mallory", "CONTRIBUTOR", "--package planted --good 1.0")
    proc = scene.once()
    replies = [c for c in scene.hub.comments_on(REPO, 8) if "envbisect:denied" in c.body]
    assert len(replies) == 1 and "@mallory" in replies[0].body
    assert "owner, member, collaborator or @carol" in replies[0].body
    assert scene.runs() == runs and scene.hub.reactions_on(first) == []
    assert "mallory may not ask for runs here; nothing runs" in proc.stderr
    assert scene.request_row(first)["status"] == "denied"


def test_unlabelled_issue_is_ignored_and_malformed_request_gets_one_reply(scene):
    runs = scene.runs()
    ignored = scene.request(9, "carol", "NONE", "--package planted")
    bad = scene.request(8, "carol", "NONE", "--package planted --index-url http://127.0.0.1:9/simple")
    scene.once()
    assert scene.answers(ignored) == [] and scene.request_row(ignored)["status"] == "ignored"
    [answer] = scene.answers(bad)
    assert "cannot run this request" in answer.body and "--index-url cannot be set by a request" in answer.body
    assert scene.hub.reactions_on(bad) == ["confused"] and scene.runs() == runs
    scene.once()
    assert len(scene.answers(bad)) == 1


def test_a_request_over_its_probe_limit_stops_and_says_so(scene):
    body = f"/envbisect run -p planted --good 1.4 --bad 1.8\n```python\n{scene.recipe('limited')}```\n"
    request = scene.hub.add_comment("octo/tight", 1, body, user="olga", association="OWNER").id
    runs = scene.runs()
    scene.once()
    [answer] = [c for c in scene.hub.comments if f"envbisect:request octo/tight/{request} " in c.body]
    assert "stopped by a limit" in answer.body and "stopped after 1 probes (max-probes = 1)" in answer.body
    assert scene.hub.reactions_on(request) == ["eyes", "confused"] and scene.runs() == runs + 1


def test_api_500_and_401_are_logged_backed_off_and_answered_once(scene):
    request = scene.request(7, "carol", "NONE", "--package planted --good 1.4 --bad 1.8")
    scene.hub.fail(500, method="GET", path_part=f"/repos/{REPO}/issues/comments")
    failed = scene.once(expect=1)
    assert "GitHub failed while listing the issue comments of octo/demo (HTTP 500)" in failed.stderr
    assert "backing off 2 s" in failed.stderr and scene.answers(request) == []
    con = sqlite3.connect(scene.cache / "results.db")
    try:
        state = json.loads(con.execute("select state from listens where repo = ?", [REPO]).fetchone()[0])
    finally:
        con.close()
    assert state["failures"] == 1 and "HTTP 500" in state["last_error"] and state["next_poll"] > time.time() - 60
    scene.hub.fail(401, method="POST", path_part="/reactions")
    refused = scene.once(expect=1)
    assert "GitHub rejected the token while reacting eyes" in refused.stderr and "(HTTP 401)" in refused.stderr
    assert scene.request_row(request)["status"] == "queued" and scene.answers(request) == []
    scene.once()
    [answer] = scene.answers(request)
    assert "<!-- envbisect:state done -->" in answer.body and "1.6" in answer.body
    assert scene.hub.reactions_on(request) == ["eyes", "rocket"]


def test_daemon_killed_mid_request_resumes_and_answers_once(scene):
    scene.slow.touch()
    request = scene.request(7, "maria", "OWNER", "--package planted --good 1.4 --bad 1.8", tag="restart")
    daemon = subprocess.Popen([sys.executable, "-m", "envbisect", "watch", "--config", str(scene.config),
                               "--cache-dir", str(scene.cache)], cwd=scene.tmp, env=scene.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not scene.started.exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scene.started.exists(), daemon.stderr.read() if daemon.poll() is not None else "no probe started"
        [before] = scene.answers(request)
        assert "<!-- envbisect:state running -->" in before.body
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        daemon.stderr.close()
    recipe_pid = int(scene.started.read_text() or 0)
    if recipe_pid and is_running(recipe_pid):
        os.kill(recipe_pid, signal.SIGKILL)  # the orphaned probe of the killed daemon
    scene.slow.unlink()
    scene.once()
    [answer] = scene.answers(request)
    assert answer.id == before.id and "<!-- envbisect:state done -->" in answer.body
    assert "first bad release of planted: 1.6" in answer.body
    assert scene.hub.reactions_on(request) == ["eyes", "rocket"]

