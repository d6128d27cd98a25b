"""``bisect narrow`` and ``bisect run --narrow`` end to end on the loopback index.

``knobby`` 2.0 plants two regressions, each switched off by one knob: ``ENV_OK`` is wrong
unless ``KNOBBY_FAST_MATH=0`` (an environment knob), ``STARTUP_OK`` is wrong unless
``knobby.settings.FUSED`` is false when ``knobby`` reads it at import (a start-up knob,
applied by envbisect's per-probe ``sitecustomize``). Each recipe declares both knobs and
three decoys: narrow must name exactly the planted one, in ddmin's few probes, and
nothing else. Real uv installs, real recipe subprocesses, a real SQLite file.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from support.cli import assert_one_line_error, bisect_cli, cli_env, write_recipe
from support.db import rows as probe_rows
from support.wheels import build_wheel

SETTINGS = "FUSED = True\nCACHE = True\nTILE = 8\n"
GOOD_INIT = "ENV_OK = True\nSTARTUP_OK = True\n"
BAD_INIT = """import os
from knobby import settings
STARTUP_OK = not settings.FUSED            # read at import: only a start-up knob reaches it
ENV_OK = os.environ.get("KNOBBY_FAST_MATH", "1") == "0"
"""
KNOBS = """[tool.envbisect.knobs]
KNOBBY_FAST_MATH = ["0"]
KNOBBY_THREADS = ["1", "4"]
fused = {module = "knobby.settings", attribute = "FUSED", values = [false]}
cache = {module = "knobby.settings", attribute = "CACHE", values = [false]}
tile = {module = "knobby.settings", attribute = "TILE", values = [16]}
"""
#: The start-up recipe kills envbisect (SIGKILL) during its second knob probe, once.
BODY = """
import os, signal, sys
import knobby
kill_file = os.environ.get("KNOBBY_KILL_FILE")
if kill_file and "ENVBISECT_KNOBS" in os.environ:
    count = int(open(kill_file).read() or 0) + 1 if os.path.exists(kill_file) else 1
    open(kill_file, "w").write(str(count))
    if count == 2:
        os.kill(os.getppid(), signal.SIGKILL)
sys.exit(0 if knobby.{flag} else 1)
"""


@pytest.fixture(scope="module")
def knobby(tmp_path_factory):
    from support.index_server import LocalIndex

    root = tmp_path_factory.mktemp("narrow")
    index = LocalIndex(root / "index").start()
    for n, (version, init) in enumerate((("1.0", GOOD_INIT), ("2.0", BAD_INIT))):
        wheel = build_wheel(root / "dists", "knobby", version,
                            files={"knobby/__init__.py": init, "knobby/settings.py": SETTINGS})
        index.add(wheel, upload_time=datetime(2024, 3 + n, 1, tzinfo=timezone.utc))
    yield root, index
    index.stop()


def _recipe(root, flag):
    return write_recipe(root / f"{flag.lower()}_recipe.py", BODY.replace("{flag}", flag), package="knobby",
                        deps=("knobby",), extra_tool=KNOBS)


@pytest.fixture(scope="module")
def env_run(knobby):
    """``bisect run --narrow`` of the environment-knob recipe (its JSON)."""
    root, index = knobby
    proc = bisect_cli("run", str(_recipe(root, "ENV_OK")), "--index-url", index.url, "--cache-dir",
                      str(root / "cache"), "--narrow", "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    return proc.json


def test_run_narrow_names_the_environment_knob_and_nothing_else(knobby, env_run):
    root, _ = knobby
    res = env_run
    assert (res["last_good"], res["first_bad"]) == ("1.0", "2.0")
    knobs = res["knobs"]
    assert knobs["answer"] == "settings"
    assert [(s["knob"], s["value"]) for s in knobs["settings"]] == [("KNOBBY_FAST_MATH", "0")]
    assert knobs["also"] == [] and knobs["coarse"] == []
    assert knobs["summary"] == "setting KNOBBY_FAST_MATH=0 makes knobby 2.0 good"
    assert sorted(knobs["tried"]) == ["KNOBBY_FAST_MATH", "KNOBBY_THREADS", "cache", "fused", "tile"]
    # ddmin: the plain env (reused from the bisection), two all-at-once rounds... at most 7, never 6 singles + more.
    assert len(knobs["trials"]) <= 6 and knobs["probes"] == len(knobs["trials"]) + 1
    text = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(root / "cache"), cwd=root).stdout
    assert "The knob that flips it" in text and "setting KNOBBY_FAST_MATH=0 makes knobby 2.0 good" in text


def test_narrow_names_the_startup_knob_and_resumes_after_kill_9_without_duplicates(knobby):
    root, index = knobby
    cache = str(root / "cache")
    run = bisect_cli("run", str(_recipe(root, "STARTUP_OK")), "--index-url", index.url, "--cache-dir", cache,
                     "--json", cwd=root, check_json=True)
    assert run.returncode == 0 and run.json["first_bad"] == "2.0", run.stderr
    run_id = str(run.json["run_id"])
    env = cli_env(KNOBBY_KILL_FILE=str(root / "kills"))
    killed = bisect_cli("narrow", run_id, "--index-url", index.url, "--cache-dir", cache, "--json", cwd=root,
                        env=env)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    done = bisect_cli("narrow", run_id, "--index-url", index.url, "--cache-dir", cache, "--json", cwd=root,
                      env=env, check_json=True)
    assert done.returncode == 0, done.stderr
    res = done.json
    assert [(s["knob"], s["value"]) for s in res["settings"]] == [("fused", False)]
    assert res["also"] == [] and res["coarse"] == [] and res["answer"] == "settings"
    assert res["summary"] == "turning off knobby.settings.FUSED makes knobby 2.0 good"
    rows = probe_rows(root / "cache" / "results.db", res["run_id"])
    labels = [r["version"] for r in rows]
    assert len(labels) == len(set(labels)) == res["probes"]  # one row per probe, none lost, none twice
    assert any(json.loads(r["env_values"] or "{}").get("ENVBISECT_KNOBS") for r in rows)
    assert res["executed"] < res["probes"] - 1  # the probes recorded before the kill were not run again
    # The answer is on the bisection run too: summary, JSON, report and the issue comment's body.
    shown = bisect_cli("show", run_id, "--cache-dir", cache, cwd=root).stdout
    assert "knob: turning off knobby.settings.FUSED makes knobby 2.0 good" in shown
    report = json.loads(bisect_cli("report", run_id, "--format", "json", "--cache-dir", cache, cwd=root).stdout)
    assert report["knobs"]["settings"][0]["knob"] == "fused"
    # Asked again: every probe is reused by its key (knob settings included), none executed.
    again = bisect_cli("narrow", run_id, "--cache-dir", cache, "--json", cwd=root, check_json=True).json
    assert again["settings"] == res["settings"] and again["executed"] == 0


def test_narrow_refuses_runs_without_a_bad_environment_and_unknown_knobs(knobby, env_run):
    root, index = knobby
    cache = str(root / "cache")
    check = bisect_cli("check", str(_recipe(root, "ENV_OK")), "--with", "knobby==1.0", "--index-url", index.url,
                       "--cache-dir", cache, "--json", cwd=root, check_json=True)
    assert check.json["outcome"] == "good"
    assert_one_line_error(bisect_cli("narrow", str(check.json["run_id"]), "--cache-dir", cache, cwd=root),
                          "no bad environment to narrow", "outcome is good")
    assert_one_line_error(bisect_cli("narrow", str(env_run["run_id"]), "--knob", "torch", "--cache-dir", cache,
                                     cwd=root), "--knob torch matches none", "KNOBBY_FAST_MATH")
