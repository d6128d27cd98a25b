"""``bisect attach`` end to end: a real bisection, the real CLI, a local GitHub API server.

Proves the marker makes posting idempotent (even after the database is deleted), that
every page of comments is read first, and that each failure (no token, 401, 403 rate
limit, 404, network down) is one line naming the fix, never echoing the token.
"""

from __future__ import annotations

import socket
import sqlite3

import pytest

from support.cli import PLANTED_BODY, bisect_cli, cli_env, write_recipe
from support.github_server import FakeGitHub

TOKEN = "fake-attach-test-token-9876543210-SECRET"  # not a real token format


@pytest.fixture
def hub():
    server = FakeGitHub(token=TOKEN, max_per_page=3).start()
    server.add_issue("octo/demo", 3, existing_comments=7)
    yield server
    server.stop()


@pytest.fixture
def bisected(tmp_path, planted_index):
    """A cache holding one finished bisection of the planted regression (run id)."""
    recipe = write_recipe(tmp_path / "planted_recipe.py", PLANTED_BODY)
    cache = tmp_path / "cache"

    def run() -> int:
        proc = bisect_cli("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache),
                          "--json", cwd=tmp_path, check_json=True)
        assert proc.returncode == 0, proc.stderr
        return proc.json["run_id"]

    return tmp_path, cache, run


def _attach(tmp, cache, run_id, issue, env, *extra: str):
    return bisect_cli("attach", str(run_id), "--issue", issue, "--cache-dir", str(cache), *extra, cwd=tmp, env=env)


def _one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 7, proc.stdout + proc.stderr  # the issue-tracker class
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert TOKEN not in proc.stderr + proc.stdout


def test_attach_posts_once_updates_in_place_and_survives_a_lost_database(bisected, hub):
    tmp, cache, run = bisected
    run_id = run()
    env = cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)

    dry = _attach(tmp, cache, run_id, "octo/demo#3", cli_env(), "--dry-run")  # no token needed, nothing sent
    assert dry.returncode == 0, dry.stderr
    assert "would post to octo/demo#3" in dry.stdout
    assert "<!-- envbisect:finding regression/planted==1.6/planted_recipe -->" in dry.stdout
    assert hub.hits == []

    first = _attach(tmp, cache, run_id, "https://github.com/octo/demo/issues/3", env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created comment on octo/demo#3")
    [comment] = hub.comments_on("octo/demo", 3)
    assert "regression in `planted` 1.6" in comment.body and "last good: 1.5" in comment.body
    assert hub.count("GET") == 3, "7 existing comments at 3 per page: every page is read"

    again = _attach(tmp, cache, run_id, "octo/demo#3", env)
    assert again.returncode == 0 and again.stdout.startswith("unchanged comment"), again.stdout
    assert len(hub.comments_on("octo/demo", 3)) == 1 and hub.count("PATCH") == 0

    con = sqlite3.connect(cache / "results.db")
    rows = con.execute("select issue, comment_url, body_hash from attachments where run_id = ?", [run_id]).fetchall()
    con.close()
    assert [r[0] for r in rows] == ["octo/demo#3", "octo/demo#3"] and rows[0][1].endswith(f"-{comment.id}")

    for suffix in ("", "-wal", "-shm"):
        (cache / f"results.db{suffix}").unlink(missing_ok=True)
    new_run = run()
    after_loss = _attach(tmp, cache, new_run, "octo/demo#3", env)
    assert after_loss.returncode == 0, after_loss.stderr
    assert after_loss.stdout.startswith(("updated comment", "unchanged comment"))
    assert len(hub.comments_on("octo/demo", 3)) == 1 and hub.count("POST") == 1
    assert len(hub.comments_on("octo/demo", 3, user=None)) == 8
    assert all(TOKEN not in c.body for c in hub.comments)
    assert TOKEN.encode() not in (cache / "results.db").read_bytes()


def test_attach_errors_are_one_line_each(bisected, hub):
    tmp, cache, run = bisected
    run_id = run()
    api = {"GITHUB_API_URL": hub.url}

    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", cli_env(**api)), "GITHUB_TOKEN is not set")
    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", cli_env(GITHUB_TOKEN="wrong", **api)),
                    "HTTP 401", "GITHUB_TOKEN")
    good = cli_env(GITHUB_TOKEN=TOKEN, **api)
    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#99", good), "HTTP 404", "octo/demo#99")
    hub.rate_limited = True
    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", good), "rate limit", "2030-03-17 17:46:40 UTC")
    hub.rate_limited = False
    # Something else answering at GITHUB_API_URL (a proxy's or captive portal's page, with
    # 200), or GitHub-shaped JSON without what is needed: one line each, nothing posted.
    hub.fail(200, method="GET", path_part="/comments", body=b"<html><body>Sign in to the Wi-Fi</body></html>")
    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", good),
                    "reading the comments of octo/demo#3 is not a JSON array (HTTP 200, text/html)", "GITHUB_API_URL")
    hub.fail(200, method="GET", path_part="/comments", body=b"[" * 100_000 + b"]" * 100_000)
    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", good), "is not a JSON array")
    for body in (b'[{"id": "x"}]', b'[{"id": true}]', b'[{"id": -4}]'):
        hub.fail(200, method="GET", path_part="/comments", body=body)
        _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", good), "holds a comment without a numeric id")

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    down = cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=f"http://127.0.0.1:{closed}")
    _one_line_error(_attach(tmp, cache, run_id, "octo/demo#3", down), "cannot reach GitHub")

    bad_ref = _attach(tmp, cache, run_id, "octo/demo/3", good)
    assert bad_ref.returncode == 2 and "owner/repo#N" in bad_ref.stderr
    assert hub.comments_on("octo/demo", 3) == [], "no failed attempt may have posted anything"
