"""Secrets: what other local users (``ps``), recipes (``/proc``), the issue tracker's
neighbours and the results database can see.

Real parts throughout: an index behind basic auth, real uv and pip, real recipes reading
``/proc`` of their ancestors, the real CLI as a subprocess, a loopback GitHub API (a second
one on 127.0.0.2 plays "another host"). Every secret is unique to its test run, so another
test running at the same time on this machine can never be mistaken for a leak.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from support.cli import PLANTED_BODY, bisect_cli, cli_env, write_recipe
from support.github_server import FakeGitHub

USER = "alice"
TOKEN = f"gh-test-token-{uuid.uuid4().hex}"
MARKER = "<!-- envbisect:finding regression/planted==1.6/planted_recipe -->"


def _password() -> str:
    return f"pw-{uuid.uuid4().hex}"


# ------------------------------------------------------------ 1. never on a command line


class CmdlineWatch:
    """Collects the command line of every process on the machine: from a polling thread,
    and at each index request (the requesting installer is alive then, so it is seen)."""

    def __init__(self, needle: str) -> None:
        self.needle = needle
        self.leaks: set[str] = set()
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def snapshot(self) -> None:
        for proc in psutil.process_iter(["cmdline"]):
            line = " ".join(proc.info.get("cmdline") or [])
            if not line:
                continue
            with self._lock:
                self.seen.add(line)
                if self.needle in line:
                    self.leaks.add(line.replace(self.needle, "<PASSWORD>"))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.snapshot()
            self._stop.wait(0.005)

    def hook(self, index) -> None:
        """Snapshot at every page and file the index serves."""
        for name in ("render_project", "render_file"):
            original = getattr(index, name)

            def wrapped(*args, _original=original, **kwargs):
                self.snapshot()
                return _original(*args, **kwargs)

            setattr(index, name, wrapped)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def saw(self, *words: str) -> bool:
        return any(all(w in line for w in words) for line in self.seen)


def test_index_credentials_never_reach_a_command_line(tmp_path, planted_index_factory):
    password = _password()
    planted = planted_index_factory(auth=(USER, password))
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    # Credentials only in the environment, as a user sets them for a private mirror.
    env = cli_env(UV_INDEX_URL=planted.index.auth_url)
    with CmdlineWatch(password) as watch:
        watch.hook(planted.index)
        uv = bisect_cli("check", str(recipe), "--with", "planted==1.5", "--cache-dir", str(tmp_path / "c1"),
                        "--json", cwd=tmp_path, env=env, check_json=True)
        pip = bisect_cli("check", str(recipe), "--with", "planted==1.6", "--installer", "pip",
                         "--cache-dir", str(tmp_path / "c2"), "--json", cwd=tmp_path, env=env, check_json=True)
    # Both installed through the authenticated index.
    assert uv.returncode == 0 and uv.json["resolved"]["planted"] == "1.5", uv.stderr
    assert pip.returncode == 1 and pip.json["resolved"]["planted"] == "1.6", pip.stderr
    assert watch.saw("uv", "pip", "compile") and watch.saw("uv", "pip", "sync", str(tmp_path)), \
        "the installers were never observed"
    assert watch.saw("-m", "pip", "install", str(tmp_path)), "the pip backend was never observed"
    assert watch.leaks == set(), watch.leaks


# ------------------------------------------------------ 2. recipes cannot read the parent

ANCESTORS_BODY = """
import json, os, sys, planted
found, pid = [], os.getppid()
while pid > 1:
    entry = {"pid": pid}
    for name in ("environ", "cmdline"):
        try:
            entry[name] = open(f"/proc/{pid}/{name}", "rb").read().decode("utf-8", "replace").replace("\\0", "\\n")
        except OSError as exc:
            entry[name] = f"unreadable: {exc}"
    found.append(entry)
    stat = open(f"/proc/{pid}/stat").read()
    pid = int(stat.rsplit(")", 1)[1].split()[1])
json.dump(found, open(DUMP, "w"))
sys.exit(0 if planted.VALUE == 1 else 1)
"""


def test_a_recipe_cannot_read_the_secrets_of_its_ancestors(tmp_path, planted_index_factory):
    password, api_key = _password(), f"key-{uuid.uuid4().hex}"
    planted = planted_index_factory(auth=(USER, password))
    dump = tmp_path / "ancestors.json"
    recipe = write_recipe(tmp_path / "r.py", f"DUMP = {str(dump)!r}\n" + ANCESTORS_BODY)
    env = cli_env(GITHUB_TOKEN=TOKEN, ACME_SERVICE_API_KEY=api_key)
    entry_points = ([sys.executable, "-m", "envbisect"], [str(Path(sys.executable).with_name("bisect"))])
    for n, entry_point in enumerate(entry_points):  # python -m envbisect, and the console script
        dump.unlink(missing_ok=True)
        proc = subprocess.run([*entry_point, "check", str(recipe), "--with", "planted==1.5",
                               "--index-url", planted.index.auth_url, "--cache-dir", str(tmp_path / f"cache{n}")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout + proc.stderr  # installed through the authenticated index
        ancestors = json.loads(dump.read_text())
        [cli] = [a for a in ancestors if "check" in a["cmdline"].split("\n") and "--index-url" in a["cmdline"]]
        assert not cli["environ"].startswith("unreadable") and "PATH=" in cli["environ"], cli
        text = json.dumps(ancestors)
        for secret in (TOKEN, api_key, password):
            assert secret not in text, f"{secret[:6]}… readable from /proc by the recipe ({entry_point[-1]})"
        assert "http://***@127.0.0.1" in cli["cmdline"], cli["cmdline"]  # what `ps` shows now


# ------------------------------------------------------------------ 3 and 4: the tracker


@pytest.fixture
def bisected(tmp_path, planted_index):
    """A cache holding one finished bisection of the planted regression: (cache, run id)."""
    recipe = write_recipe(tmp_path / "planted_recipe.py", PLANTED_BODY)
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache),
                      "--json", cwd=tmp_path, check_json=True)
    assert proc.returncode == 0, proc.stderr
    return cache, proc.json["run_id"]


@pytest.fixture
def hub():
    server = FakeGitHub(token=TOKEN, max_per_page=3).start()
    server.add_issue("octo/demo", 3, existing_comments=7)
    server.add_issue("octo/demo", 4, existing_comments=4)
    yield server
    server.stop()


def _attach_cmd(cache: Path, run_id: int, issue: str) -> list[str]:
    return [sys.executable, "-m", "envbisect", "attach", str(run_id), "--issue", issue, "--cache-dir", str(cache)]


def _ours(hub: FakeGitHub, number: int):
    return [c for c in hub.comments_on("octo/demo", number, user=None) if MARKER in c.body]


def test_concurrent_attaches_post_one_comment(tmp_path, bisected, hub):
    cache, run_id = bisected
    env = cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)
    hub.gate_reads(4, timeout=8)  # the first page of comments is answered once all four are reading
    procs = [subprocess.Popen(_attach_cmd(cache, run_id, "octo/demo#4"), cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for _ in range(4)]
    captured = [p.communicate(timeout=120) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, captured)]
    assert all(code == 0 for code, _, _ in results), results
    assert len(_ours(hub, 4)) == 1, [c.id for c in _ours(hub, 4)]
    assert sorted(out.split()[0] for _, out, _ in results) == ["created", "unchanged", "unchanged", "unchanged"]
    assert all(TOKEN not in out + err for _, out, err in results)


def test_duplicate_comments_collapse_to_the_oldest(tmp_path, bisected, hub):
    cache, run_id = bisected
    first = hub.add_comment("octo/demo", 3, f"{MARKER}\nan older rendering")
    hub.add_comment("octo/demo", 3, "someone else's comment", user="someone")
    hub.add_comment("octo/demo", 3, f"{MARKER}\nthe same finding, posted twice")
    proc = bisect_cli("attach", str(run_id), "--issue", "octo/demo#3", "--cache-dir", str(cache), cwd=tmp_path,
                      env=cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url))
    assert proc.returncode == 0 and proc.stdout.startswith("updated comment"), proc.stdout + proc.stderr
    [kept] = _ours(hub, 3)
    assert kept.id == first.id and "regression in `planted` 1.6" in kept.body
    assert hub.count("DELETE", 204) == 1 and len(hub.comments_on("octo/demo", 3, user=None)) == 7 + 2


def test_the_token_may_come_from_a_file(tmp_path, bisected, hub):
    cache, run_id = bisected
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    linked = tmp_path / "mounted-secret"  # a Kubernetes secret volume: the file is a link
    linked.symlink_to(token_file)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "github_token").write_text(TOKEN)
    hub.add_issue("octo/demo", 5)
    for issue, env in (("octo/demo#3", cli_env(GITHUB_TOKEN_FILE=str(token_file), GITHUB_API_URL=hub.url)),
                       ("octo/demo#4", cli_env(CREDENTIALS_DIRECTORY=str(creds), GITHUB_API_URL=hub.url)),
                       ("octo/demo#5", cli_env(GITHUB_TOKEN_FILE=str(linked), GITHUB_API_URL=hub.url))):
        proc = bisect_cli("attach", str(run_id), "--issue", issue, "--cache-dir", str(cache), cwd=tmp_path, env=env)
        assert proc.returncode == 0 and proc.stdout.startswith("created comment"), proc.stdout + proc.stderr
    assert len(_ours(hub, 3)) == len(_ours(hub, 4)) == len(_ours(hub, 5)) == 1
    missing = bisect_cli("attach", str(run_id), "--issue", "octo/demo#3", "--cache-dir", str(cache), cwd=tmp_path,
                         env=cli_env(GITHUB_TOKEN_FILE=str(tmp_path / "nope"), GITHUB_API_URL=hub.url))
    _one_line_error(missing, "cannot read the token file", "GITHUB_TOKEN_FILE")


def test_a_token_file_that_is_no_plain_file_is_refused_without_waiting(tmp_path, bisected, hub):
    """A FIFO with no writer would block the read for ever, /dev/zero never ends, and an
    oversized file is the wrong one: each is one error line, at once (the test's timeout
    would catch a hang), and nothing is posted."""
    cache, run_id = bisected
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_text(TOKEN + "x" * (64 * 1024))
    creds = tmp_path / "credentials"
    creds.mkdir()
    os.mkfifo(creds / "github_token")
    for env, why in ((dict(GITHUB_TOKEN_FILE=str(fifo)), "it is a FIFO, not a regular file"),
                     (dict(GITHUB_TOKEN_FILE="/dev/zero"), "it is a device, not a regular file"),
                     (dict(GITHUB_TOKEN_FILE=str(tmp_path)), "it is a directory, not a regular file"),
                     (dict(GITHUB_TOKEN_FILE=str(big)), "larger than 64 KiB"),
                     (dict(CREDENTIALS_DIRECTORY=str(creds)), "it is a FIFO, not a regular file")):
        proc = bisect_cli("attach", str(run_id), "--issue", "octo/demo#3", "--cache-dir", str(cache), cwd=tmp_path,
                          env=cli_env(GITHUB_API_URL=hub.url, **env), timeout=60)
        _one_line_error(proc, "cannot read the token file", why, "GITHUB_TOKEN_FILE")
    assert not _ours(hub, 3) and not hub.count("POST", 201)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 7, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert TOKEN not in proc.stdout + proc.stderr
    return lines[0]


def _attacher(tmp_path: Path, cache: Path, run_id: int):
    def attach(api: str) -> subprocess.CompletedProcess:
        return bisect_cli("attach", str(run_id), "--issue", "octo/demo#3", "--cache-dir", str(cache), cwd=tmp_path,
                          env=cli_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=api))
    return attach


def test_the_token_goes_only_to_an_https_api(tmp_path, bisected, hub):
    attach = _attacher(tmp_path, *bisected)
    # Plain http to a host that is not this machine's loopback: refused before any request.
    _one_line_error(attach("http://github.invalid/api/v3"), "GITHUB_API_URL", "https")
    _one_line_error(attach("ftp://127.0.0.1/"), "https")
    ok = attach(hub.url)  # plain http to a loopback host is allowed (tests)
    assert ok.returncode == 0 and ok.stdout.startswith("created comment"), ok.stdout + ok.stderr


def test_the_token_never_follows_pagination_to_another_host(tmp_path, bisected, hub):
    attach = _attacher(tmp_path, *bisected)
    elsewhere = FakeGitHub(token=TOKEN, host="127.0.0.2").start()
    try:
        elsewhere.add_issue("octo/demo", 3)
        hub.next_base = elsewhere.url
        _one_line_error(attach(hub.url), "another host", "127.0.0.2")
        assert elsewhere.hits == [], "the second host was contacted"
        hub.next_base = f"http://localhost:{hub.url.rsplit(':', 1)[1]}"  # same server, another name
        _one_line_error(attach(hub.url), "another host", "localhost")
        assert not [h for h in hub.hits if h.authorized and h.method != "GET"], "nothing may be posted"
        assert hub.count("GET") == 2, "only the first page, from the configured host, was read"
    finally:
        elsewhere.stop()


# ----------------------------------------------------------------- 5. redacted tails


def _secrets() -> dict[str, str]:
    return {"bearer": f"ghp_{uuid.uuid4().hex}", "query": f"abc{uuid.uuid4().hex[:10]}", "userinfo": _password()}


LEAKY_BODY = """
import sys, planted
lines = [f"Authorization: Bearer {S['bearer']}", f"see https://host.example/x?token={S['query']}&page=2",
         f"mirror http://u:{S['userinfo']}@h.example/"]
for stream in (sys.stdout, sys.stderr):
    print("\\n".join(lines), file=stream)
if "raise" in S:
    raise RuntimeError(lines[0] + " " + lines[1])
sys.exit(0 if planted.VALUE == 1 else 1)
"""


def _reads(path, values: dict[str, str]) -> str:
    """Recipe lines that load ``values`` from the file ``path`` (written here) into ``S``."""
    path.write_text(json.dumps(values))
    return f"import json\nS = json.load(open({str(path)!r}))\n"


def test_output_tails_and_reasons_are_redacted(tmp_path, planted_index):
    secrets = _secrets()
    # The secrets reach the recipe from a file, not its text: a report shows the recipe's
    # source as written (only credential URLs, Authorization headers and token= values in
    # it are redacted), so a secret typed into a recipe would be shown like any other text.
    recipe = write_recipe(tmp_path / "leaky.py", _reads(tmp_path / "leaky.json", secrets) + LEAKY_BODY)
    cache = tmp_path / "cache"
    run = bisect_cli("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache), "--json",
                     cwd=tmp_path, check_json=True)
    assert run.returncode == 0 and run.json["first_bad"] == "1.6", run.stderr
    raising = write_recipe(tmp_path / "raising.py", _reads(tmp_path / "raising.json", dict(secrets, **{"raise": "1"}))
                           + LEAKY_BODY)
    check = bisect_cli("check", str(raising), "--index-url", planted_index.url, "--cache-dir", str(cache),
                       cwd=tmp_path)
    assert check.returncode == 8 and "uncaught RuntimeError: Authorization: Bearer ***" in check.stdout, check.stdout
    run_id = str(run.json["run_id"])
    outputs = [run.stdout, check.stdout, check.stderr]
    for args in (("show", run_id, "--json"), ("report", run_id), ("report", run_id, "--format", "json"),
                 ("show", str(run.json["run_id"] + 1), "--json"), ("report", str(run.json["run_id"] + 1))):
        proc = bisect_cli(*args, "--cache-dir", str(cache), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs += [proc.stdout, proc.stderr]

    con = sqlite3.connect(cache / "results.db")
    rows = con.execute("SELECT stdout_tail, stderr_tail, reason FROM probes WHERE stdout_tail IS NOT NULL").fetchall()
    con.close()
    stored = [value or "" for row in rows for value in row]
    assert len(rows) >= 3 and all("Authorization: Bearer ***" in r[0] and "token=***&page=2" in r[1]
                                  and "http://***@h.example/" in r[1] for r in rows), rows
    assert any("uncaught RuntimeError" in (r[2] or "") for r in rows)
    for secret in secrets.values():
        assert not [v for v in stored if secret in v], f"{secret[:6]}… stored in the database"
        assert not [o for o in outputs if secret in o], f"{secret[:6]}… printed"
