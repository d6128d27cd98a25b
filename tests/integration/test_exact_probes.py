"""Exact probes: what a stored verdict is keyed on, end to end.

Each test guards one defect of the previous version, named in its docstring. That
version keyed environments on the unpinned requirement strings, keyed probes on
recipe + env + hostname, and let uv resolve from its own cached project pages; each of
those made envbisect answer from, or build in, a world that no longer existed.

All real: ``bisect`` as a subprocess, real uv, a real HTTP index on 127.0.0.1 that the
tests publish into between commands. The wheels are tiny and built once per module:
``toypkg`` 1.0–1.30 (``VALUE`` 2, the regression, from 1.27 on), a second build of
``toypkg`` 1.0 with the regression (the same filename, other bytes), and ``dep`` 1.0
(``VALUE`` 1) and 2.0 (``VALUE`` 2).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from packaging.version import Version

from envbisect.host import fingerprint_id
from support.cli import bisect_cli, cli_env, write_recipe
from support.procs import is_running
from support.wheels import build_wheel

#: Upload time of the first toypkg release and of dep 1.0: long before any run's snapshot.
PAST = datetime(2024, 1, 1, tzinfo=timezone.utc)
FIRST_BAD = "1.27"
TOY_VERSIONS = tuple(f"1.{minor}" for minor in range(31))  # 1.0 ... 1.30

#: Good while neither toypkg nor dep carries its regression.
TOY_DEP_BODY = """
import sys, toypkg, dep
sys.exit(0 if toypkg.VALUE == 1 and dep.VALUE == 1 else 1)
"""
TOY_BODY = """
import sys, toypkg
sys.exit(0 if toypkg.VALUE == 1 else 1)
"""


def _module(name: str, version: str, value: int) -> dict[str, str]:
    return {f"{name}/__init__.py": f'__version__ = "{version}"\nVALUE = {value}\n'}


@dataclass(frozen=True)
class Dists:
    """The module's wheels (see the module docstring)."""

    toypkg: dict[str, Path]
    toypkg_1_0_rebuilt: Path  # toypkg-1.0-py3-none-any.whl again, with VALUE = 2
    toypkg_1_0_needs_dep: Path  # toypkg-1.0-py3-none-any.whl again, good, with Requires-Dist: dep
    dep: dict[str, Path]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    dest = tmp_path_factory.mktemp("exact-dists")
    toypkg = {v: build_wheel(dest, "toypkg", v, files=_module("toypkg", v, 1 + (Version(v) >= Version(FIRST_BAD))))
              for v in TOY_VERSIONS}
    rebuilt = build_wheel(dest / "rebuilt", "toypkg", "1.0", files=_module("toypkg", "1.0", 2))
    needs_dep = build_wheel(dest / "needs-dep", "toypkg", "1.0", files=_module("toypkg", "1.0", 1),
                            requires_dist=["dep"])
    dep = {v: build_wheel(dest, "dep", v, files=_module("dep", v, int(float(v)))) for v in ("1.0", "2.0")}
    return Dists(toypkg, rebuilt, needs_dep, dep)


class World:
    """One test's index, cache and recipes, and the commands run against them."""

    def __init__(self, tmp: Path, index, dists: Dists) -> None:
        self.tmp, self.index, self.dists = tmp, index, dists
        self.cache = tmp / "cache"

    # -- the index -------------------------------------------------------------------

    def publish_toypkg(self, *versions: str, now: bool = False) -> None:
        """Publish toypkg releases, dated in the past (``now``: stamped now, as an upload is)."""
        for v in versions:
            dated = PAST + timedelta(days=TOY_VERSIONS.index(v))
            self.index.add(self.dists.toypkg[v], upload_time=None if now else dated)

    def publish_dep(self, version: str, upload_time: datetime | None = None) -> None:
        self.index.add(self.dists.dep[version], upload_time=upload_time)

    # -- commands --------------------------------------------------------------------

    def recipe(self, body: str, *, deps: tuple[str, ...] = ("toypkg", "dep"), name: str = "toy.py",
               **kwargs) -> Path:
        return write_recipe(self.tmp / name, body, package="toypkg", deps=deps, **kwargs)

    def argv(self, command: str, recipe: Path, *extra: str) -> list[str]:
        return [command, str(recipe), "--index-url", self.index.url, "--cache-dir", str(self.cache), "--json", *extra]

    def cli(self, command: str, recipe: Path, *extra: str, env: dict | None = None,
            expect: int | None = None) -> dict:
        """``bisect COMMAND RECIPE --json ...`` against this world; its JSON answer."""
        proc = bisect_cli(*self.argv(command, recipe, *extra), cwd=self.tmp, env=env, check_json=True)
        if expect is not None:
            assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.json

    def check(self, recipe: Path, *extra: str, **kwargs) -> dict:
        return self.cli("check", recipe, *extra, **kwargs)

    # -- the store -------------------------------------------------------------------

    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        con = sqlite3.connect(self.cache / "results.db")
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def rows(self, run_id: int) -> list[dict]:
        """A run's probe rows as ``bisect show RUN --json`` gives them."""
        proc = bisect_cli("show", str(run_id), "--json", "--cache-dir", str(self.cache), cwd=self.tmp,
                          check_json=True)
        assert proc.returncode == 0, proc.stderr
        return proc.json["probe_rows"]


@pytest.fixture
def world(tmp_path, local_index, dists) -> World:
    """A world whose index lets clients keep project pages for ten minutes, as PyPI does
    (``max-age=600``): with the stock ``max-age=0`` uv revalidates every page by itself,
    which would hide a stale uv cache."""
    return World(tmp_path, local_index(page_max_age=600), dists)


def _resolved_dep(rows: list[dict]) -> set[str | None]:
    return {(r.get("resolved") or {}).get("dep") for r in rows}


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"bisect exited early ({proc.returncode}):\n{out}\n{err}")
        assert time.monotonic() < deadline, "timed out waiting for the run to record its first probes"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------- 1


@pytest.mark.parametrize("via", ["declared", "transitive"])
def test_dependency_published_after_a_check_is_seen_by_the_next(world, via):
    """Defect: the env key hashed the unpinned requirement ``dep`` (and uv resolved it
    from its cached project page), so once an env had been built with dep 1.0, every
    later check reused that env and its verdict after dep 2.0 was published: the
    regression in dep 2.0 was never seen. ``transitive``: the recipe names only
    toypkg, which requires dep, so dep's page is one the requirements never name."""
    if via == "declared":
        world.publish_toypkg("1.0")
        recipe = world.recipe(TOY_DEP_BODY)
    else:
        world.index.add(world.dists.toypkg_1_0_needs_dep, upload_time=PAST)
        recipe = world.recipe(TOY_DEP_BODY, deps=("toypkg",))
    world.publish_dep("1.0", PAST)
    before = world.check(recipe, expect=0)
    assert (before["outcome"], before["resolved"]["dep"], before["reused"]) == ("good", "1.0", False)

    world.publish_dep("2.0")  # stamped now
    after = world.check(recipe, expect=1)
    assert (after["outcome"], after["resolved"]["dep"], after["reused"]) == ("bad", "2.0", False)
    assert after["env_key"] != before["env_key"] and after["lock_hash"] != before["lock_hash"]

    fresh = world.check(recipe, "--no-reuse", expect=1)
    assert (fresh["reused"], fresh["executed"], fresh["resolved"]["dep"]) == (False, 1, "2.0")
    assert fresh["env_key"] == after["env_key"] != before["env_key"], "--no-reuse must not run in the stale env"


# ---------------------------------------------------------------------------------- 2

#: Good unless a regression is installed; while ``pause`` exists, a probe of a middle
#: candidate writes its pid to ``started`` and waits (the test kills the run meanwhile).
PAUSING_BODY = """
import os, sys, time, toypkg, dep
if os.path.exists({pause!r}) and toypkg.__version__ not in ("1.24", "1.30"):
    with open({started!r}, "w") as fh:
        fh.write(str(os.getpid()))
    deadline = time.time() + 120
    while os.path.exists({pause!r}) and time.time() < deadline:
        time.sleep(0.05)
sys.exit(0 if toypkg.VALUE == 1 and dep.VALUE == 1 else 1)
"""


def _kill_run_mid_probe(world: World, argv: list[str], pause: Path, started: Path) -> None:
    """Start ``bisect ARGV``, SIGKILL it while a middle probe runs (both ends recorded),
    then end the orphaned recipe (its own session: the kill does not reach it)."""
    pause.write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "envbisect", *argv], cwd=world.tmp, env=cli_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(started.exists, 120, proc)
        recorded = world.query("select version from probes where outcome is not null")
        assert sorted(r["version"] for r in recorded) == ["1.24", "1.30"]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        recipe_pid = int(started.read_text() or 0) if started.exists() else 0
        pause.unlink(missing_ok=True)
    if recipe_pid:
        try:
            os.kill(recipe_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        assert not is_running(recipe_pid)


def test_resumed_run_keeps_its_snapshot_and_a_new_run_takes_a_new_one(world):
    """Defect: uv resolved each probe as of "now", so a run resumed after dep 2.0 was
    published mixed dep 1.0 and dep 2.0 environments in one bisection (and blamed
    toypkg for dep's regression); the snapshot must hold for the whole run, resumes
    included, and only a new run may move to a newer world."""
    world.publish_toypkg(*(f"1.{m}" for m in range(24, 31)))  # 7 candidates, first bad 1.27
    world.publish_dep("1.0", PAST)
    pause, started = world.tmp / "pause", world.tmp / "started"
    recipe = world.recipe(PAUSING_BODY.format(pause=str(pause), started=str(started)))
    argv = world.argv("run", recipe)
    _kill_run_mid_probe(world, argv, pause, started)
    [run] = world.query("select id, status, snapshot from runs")
    assert run["status"] == "running" and run["snapshot"], run

    # dep 2.0 appears after the run's snapshot, and the clock moves past its upload.
    snapshot = datetime.strptime(run["snapshot"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    uploaded = snapshot + timedelta(seconds=2)
    world.publish_dep("2.0", uploaded)
    time.sleep(max(0.0, (uploaded - datetime.now(timezone.utc)).total_seconds() + 1.1))

    resumed = world.cli("run", recipe, expect=0)
    assert resumed["run_id"] == run["id"] and resumed["snapshot"] == run["snapshot"]
    assert (resumed["last_good"], resumed["first_bad"]) == ("1.26", FIRST_BAD)
    rows = world.rows(run["id"])
    assert len(rows) > 2 and _resolved_dep(rows) == {"1.0"}, "a resumed run must resolve as of its snapshot"

    new = world.cli("run", recipe, expect=5)  # same command, the old run is done: a new run
    assert new["run_id"] != run["id"] and new["snapshot"] > run["snapshot"]
    assert new["status"] == "predates-range"  # dep 2.0 breaks even the oldest candidate
    assert _resolved_dep(world.rows(new["run_id"])) == {"2.0"}


# ---------------------------------------------------------------------------------- 3

OLD, NEW = TOY_VERSIONS[:21], TOY_VERSIONS[21:]  # 1.0–1.20 (all good), 1.21–1.30


def _no_untestable(world: World) -> None:
    rows = world.query("select version, verdict, reason from probes")
    assert rows and not [r for r in rows if r["verdict"] == "untestable"], rows


def test_releases_published_after_uv_cached_the_page_are_bisected(world):
    """Defect: uv resolved from the project page in its own cache, which a first command
    had filled before 1.21–1.30 were published; every newer candidate then came out
    "install failed" (untestable) instead of being tested."""
    world.publish_toypkg(*OLD)
    recipe = world.recipe(TOY_BODY, deps=("toypkg",))
    assert world.check(recipe, expect=0)["resolved"]["toypkg"] == "1.20"  # uv has cached the page now
    world.publish_toypkg(*NEW, now=True)
    res = world.cli("run", recipe, "--good", "1.20", expect=0)
    assert (res["last_good"], res["first_bad"]) == ("1.26", FIRST_BAD)
    assert res["untestable"] == []
    _no_untestable(world)


def test_watch_bisects_releases_published_after_its_baseline(world):
    """The same defect in the watch daemon: the baseline filled uv's cache of the page,
    and the releases that came later could not be installed, so nothing was found."""
    world.publish_toypkg(*OLD)
    world.recipe(TOY_BODY, deps=("toypkg",))
    config = world.tmp / "bisect.toml"
    config.write_text("[[watch]]\n"
                      'name = "toy-watch"\n'
                      'recipe = "toy.py"\n'
                      'package = "toypkg"\n'
                      f'index-url = "{world.index.url}"\n')

    def once() -> str:
        proc = bisect_cli("watch", "--once", "--force", "--config", str(config), "--cache-dir", str(world.cache),
                          cwd=world.tmp)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stderr

    assert "baseline toypkg 1.20: good" in once()
    world.publish_toypkg(*NEW, now=True)
    found = once()
    assert f"found: first bad release of toypkg: {FIRST_BAD} (last good: 1.26)" in found, found
    assert "no issue configured" in found
    _no_untestable(world)


# ---------------------------------------------------------------------------------- 4


def test_file_reuploaded_under_the_same_version_is_a_new_probe(world):
    """Defect: probes and envs were keyed on ``toypkg==1.0``, so after the file of 1.0
    was replaced (a re-upload: other bytes, other sha256) the verdict of the old file
    was reused for the new one."""
    world.publish_toypkg("1.0")
    recipe = world.recipe(TOY_BODY, deps=("toypkg",))
    first = world.check(recipe, "--with", "toypkg==1.0", expect=0)
    assert first["outcome"] == "good"

    world.index.add(world.dists.toypkg_1_0_rebuilt)  # same filename: replaces the file
    second = world.check(recipe, "--with", "toypkg==1.0", expect=1)
    assert (second["outcome"], second["reused"], second["resolved"]["toypkg"]) == ("bad", False, "1.0")
    [old_row], [new_row] = world.rows(first["run_id"]), world.rows(second["run_id"])
    assert new_row["lock_hash"] != old_row["lock_hash"] and new_row["env_key"] != old_row["env_key"]
    assert new_row["reused_from"] is None


# ---------------------------------------------------------------------------------- 5

SLOW_BODY = """
import sys, time
time.sleep(2)
sys.exit(0)
"""


def test_timeout_decides_which_stored_probe_answers(world):
    """Defect: the timeout was not part of reuse, so a probe that timed out under a
    short timeout answered "timed out" for every later, longer timeout (and a slow
    finished probe answered "good" under a timeout it would have exceeded). The rule: a
    timed-out row holds for a timeout no longer than its own, a finished row for a
    timeout no shorter than its duration."""
    world.publish_toypkg("1.0")
    recipe = world.recipe(SLOW_BODY, deps=("toypkg",))

    def check(timeout: str) -> tuple[str, bool, str]:
        res = world.check(recipe, "--timeout", timeout)
        return res["outcome"], res["reused"], res["reason"]

    outcome, reused, reason = check("0.5")
    assert (outcome, reused) == ("error", False) and "timed out" in reason
    assert check("30")[:2] == ("good", False), "a 0.5 s timeout says nothing about 30 s"
    assert check("10")[:2] == ("good", True), "finished in about 2 s: holds under 10 s"
    assert check("0.5")[:2] == ("error", True), "the timed-out row holds under the same timeout"
    outcome, reused, reason = check("1")  # 0.5 s was too short to tell, 2 s is too long
    assert (outcome, reused) == ("error", False) and "timed out" in reason
    ran = world.query("select timeout_s, timed_out from probes where reused_from is null order by id")
    assert [(r["timeout_s"], bool(r["timed_out"])) for r in ran] == [(0.5, True), (30.0, False), (1.0, True)]


# ---------------------------------------------------------------------------------- 6

RTOL_BODY = """
import os, sys, toypkg
sys.exit(1 if os.environ.get("TOY_RTOL") == "0" else 0)
"""


def test_declared_environment_variables_are_part_of_the_key(world):
    """Defect: the probe key was recipe + env + hostname, so a check with TOY_RTOL=0
    reused the verdict of TOY_RTOL=1e-3. Declared variables and the user's own
    ``ENVBISECT_*`` variables are in the key; envbisect's own settings are not."""
    world.publish_toypkg("1.0")
    recipe = world.recipe(RTOL_BODY, deps=("toypkg",), extra_tool='env = ["TOY_RTOL"]')

    def check(expect: int, *, via_env: bool = False, **variables: str) -> dict:
        if via_env:  # the cache named by ENVBISECT_CACHE_DIR, not --cache-dir
            variables["ENVBISECT_CACHE_DIR"] = str(world.cache)
        return world.check(recipe, env=cli_env(**variables), expect=expect)

    loose = check(0, TOY_RTOL="1e-3")
    assert (loose["outcome"], loose["reused"]) == ("good", False)
    assert check(0, TOY_RTOL="1e-3")["reused"] is True
    strict = check(1, TOY_RTOL="0")
    assert (strict["outcome"], strict["reused"]) == ("bad", False)
    assert check(0, TOY_RTOL="1e-3", ENVBISECT_FOO="x")["reused"] is False
    assert check(0, TOY_RTOL="1e-3", ENVBISECT_FOO="x", via_env=True)["reused"] is True
    assert check(0, TOY_RTOL="1e-3", ENVBISECT_FOO="y")["reused"] is False

    [row] = world.rows(loose["run_id"])
    assert row["env_values"] == {"TOY_RTOL": "1e-3"}
    [row] = world.rows(strict["run_id"])
    assert row["env_values"] == {"TOY_RTOL": "0"}
    keys = world.query("select distinct probe_key from probes")
    assert len(keys) == 4  # 1e-3 / 0 / 1e-3 + FOO=x / 1e-3 + FOO=y


# ---------------------------------------------------------------------------------- 7

OTHER_HOST = "envbisect-other-host"


def _as_other_host() -> list[str]:
    """An argv prefix that runs a command under another hostname (a private UTS
    namespace), or skip: the real hostname cannot be changed otherwise."""
    try:
        proc = subprocess.run(["unshare", "--uts", "sh", "-c", f"hostname {OTHER_HOST} && hostname"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot run under another hostname: unshare unavailable ({exc})")
    if proc.returncode != 0 or proc.stdout.strip() != OTHER_HOST:
        pytest.skip(f"cannot run under another hostname: `unshare --uts` needs privileges ({proc.stderr.strip()})")
    return ["unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh"]


def test_host_fingerprint_has_no_hostname_and_probes_survive_a_rename(world):
    """Defect: the probe key held the hostname, so CI runners with random names (or a
    renamed laptop) never shared a result, and reports leaked the machine's name. The
    host is the fingerprint of the kind of machine: OS, release, libc, CPU, GPU."""
    world.publish_toypkg("1.0")
    recipe = world.recipe(TOY_BODY, deps=("toypkg",))
    first = world.check(recipe, expect=0)
    [row] = world.rows(first["run_id"])
    fp = row["fingerprint"]
    assert {"os", "os_release", "machine", "cpu"} <= set(fp) and fp["os"] and fp["machine"]
    assert row["host"] == fingerprint_id() == fingerprint_id(fp)
    name = re.compile(rf"(?<![\w.-]){re.escape(socket.gethostname())}(?![\w.-])")
    assert not [v for v in (*fp.values(), row["host"]) if name.search(str(v))], (socket.gethostname(), fp)

    prefix = _as_other_host()
    proc = subprocess.run([*prefix, sys.executable, "-m", "envbisect", *world.argv("check", recipe)],
                          cwd=world.tmp, env=cli_env(HOSTNAME=OTHER_HOST), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    renamed = json.loads(proc.stdout)
    assert (renamed["outcome"], renamed["reused"]) == ("good", True)
    [owner] = world.query("select owner from runs where id = ?", (renamed["run_id"],))
    assert json.loads(owner["owner"])["host"] == OTHER_HOST, "the check really ran under the other hostname"
    [copy] = world.rows(renamed["run_id"])
    assert copy["host"] == row["host"] and copy["reused_from"] == row["id"]
