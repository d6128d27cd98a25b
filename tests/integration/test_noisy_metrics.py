"""``--metric loss --samples auto`` end to end: ``bisect`` as a subprocess, real uv, a
real loopback index with wheels built here, a recipe that prints a Gaussian metric.

``noisy`` 1.0-1.7 carries ``SHIFT`` 0 before 1.5 and 1 from 1.5 on; ``halfway`` 1.0-1.4
carries 0, 0, 0.5, 1, 1. The recipe draws ``loss ~ N(d * SHIFT, 1)`` seeded by the trial
(a declared env variable, so in the probe key), the release and ``$ENVBISECT_SAMPLE``, so
every sample is reproducible and a reused or resumed sample is the same number. The
recipe is a few lines of stdlib: a sample costs one interpreter start.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import db
from support.cli import bisect_cli, cli_env, write_recipe
from support.index_server import LocalIndex
from support.noise_sim import BODY, TOOL, publish

SHIFTS = {"noisy": {f"1.{m}": (1 if m >= 5 else 0) for m in range(8)},
          "halfway": {"1.0": 0, "1.1": 0, "1.2": 0.5, "1.3": 1, "1.4": 1}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("noisy")
    index = LocalIndex(tmp / "index").start()
    for pkg, shifts in SHIFTS.items():
        publish(index, tmp / "dists", pkg, shifts)
    recipes = {pkg: write_recipe(tmp / f"recipe_{pkg}.py", BODY.format(pkg=pkg), package=pkg, deps=(pkg,),
                                 extra_tool=TOOL) for pkg in SHIFTS}
    yield tmp, index, recipes
    index.stop()


def _argv(world, pkg: str, *extra: str) -> list[str]:
    tmp, index, recipes = world
    return ["run", str(recipes[pkg]), "--index-url", index.url, "--cache-dir", str(tmp / "cache"), "--json", *extra]


def _env(trial: int, d: float = 3, **extra: str) -> dict:
    return cli_env(NOISE_TRIAL=str(trial), NOISE_D=str(d), **extra)


def _run(world, pkg: str, trial: int, *extra: str, d: float = 3, **env: str) -> dict:
    proc = bisect_cli(*_argv(world, pkg, *extra), cwd=world[0], env=_env(trial, d, **env), check_json=True)
    assert proc.returncode in (0, 4), proc.stdout + proc.stderr
    return proc.json


def _rows(world, run_id: int) -> list[dict]:
    """The run's probe rows, straight from the results database (metrics decoded)."""
    return [dict(r, metrics=json.loads(r["metrics"]) if r["metrics"] else None)
            for r in db.rows(world[0] / "cache" / "results.db", run_id)]


def test_shift_found_with_samples_stated_per_probe(world):
    """d = 3: the boundary 1.4 | 1.5; every probe states its samples and its confidence,
    every sample is one stored row, and the runs are fewer than --retries 4 would take."""
    result = _run(world, "noisy", 0)
    assert (result["status"], result["last_good"], result["first_bad"]) == ("found", "1.4", "1.5")
    ends = result["sampling"]["endpoints"]
    assert ends["separated"] and ends["good"]["n"] >= 3 and result["sampling"]["confidence"] == 0.99
    rows = _rows(world, result["run_id"])
    for probe in result["probes"]:
        mine = [r for r in rows if r["version"] == probe["version"]]
        assert [r["attempt"] for r in mine] == list(range(len(mine)))  # one row per sample, none twice
        assert [r["metrics"]["loss"] for r in mine] == probe["samples"]
        assert probe["confidence"] >= 0.99, "the posterior probability of the release's side"
    assert result["executed"] == len(rows) < 5 * len(result["probes"])
    decided = {p["version"]: p["reason"] for p in result["probes"]}
    assert "like the bad release at 99%" in decided["1.5"] and "like the good release" in decided["1.4"]
    shown = bisect_cli("show", str(result["run_id"]), "--cache-dir", str(world[0] / "cache"), cwd=world[0])
    assert "like the bad release at 99%" in shown.stdout and "samples of loss at 99% confidence" in shown.stdout
    report = bisect_cli("report", str(result["run_id"]), "--cache-dir", str(world[0] / "cache"), cwd=world[0])
    assert "Samples" in report.stdout and "99%" in report.stdout, report.stdout

    again = _run(world, "noisy", 0)  # the same question: every sample is reused, none run
    assert again["executed"] == 0 and again["first_bad"] == "1.5"
    assert [p["samples"] for p in again["probes"]] == [p["samples"] for p in result["probes"]]
    looser = _run(world, "noisy", 0, "--confidence", "0.95")  # judging settings: not in the key
    assert looser["first_bad"] == "1.5"
    reused = [r for r in _rows(world, looser["run_id"]) if r["reused_from"] is not None]
    assert reused and looser["executed"] < result["executed"]


def test_killed_run_resumes_with_every_sample_once(world):
    """kill -9 in the middle of 1.4's third sample (the release beside the change, sampled
    most): the resumed run keeps the samples taken, takes the missing one once, and walks
    the same path an uninterrupted run does."""
    mark = world[0] / "killed-once"
    env = _env(1, NOISE_KILL_AT="1.4/2", NOISE_KILL_MARK=str(mark))
    argv = _argv(world, "noisy")
    proc = subprocess.run([sys.executable, "-m", "envbisect", *argv], cwd=world[0], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == -9 and mark.exists()
    resumed = bisect_cli(*argv, cwd=world[0], env=env, check_json=True).json
    rows = _rows(world, resumed["run_id"])
    keys = [(r["seq"], r["attempt"]) for r in rows]
    assert len(keys) == len(set(keys))
    fresh = bisect_cli(*argv, "--no-reuse", cwd=world[0], env=env, check_json=True).json
    assert fresh["run_id"] != resumed["run_id"]
    assert [(p["version"], p["samples"]) for p in resumed["probes"]] == \
        [(p["version"], p["samples"]) for p in fresh["probes"]]
    assert resumed["first_bad"] == fresh["first_bad"] == "1.5"


def test_halfway_release_is_ambiguous_never_a_boundary(world):
    """halfway 1.2 draws from N(d/2, 1), 6 sd from either end: reported untestable as
    ambiguous, with its samples (closer halves are told apart less often: bench_noise)."""
    result = _run(world, "halfway", 3, d=12)
    probe = next(p for p in result["probes"] if p["version"] == "1.2")
    assert probe["reason"].startswith("ambiguous after"), probe
    assert probe["verdict"] == "untestable" and probe["samples"]
    assert {"version": "1.2", "reason": probe["reason"]} in result["untestable"]
    assert "1.2" not in (result["last_good"], result["first_bad"])


def test_a_metric_in_any_units_walks_the_same_path(world):
    """The same draws times 1e200 (their squares overflow) are sampled release for release as
    the draws themselves; an infinite loss is no sample, and the run says to use a threshold."""
    plain = _run(world, "noisy", 5)
    huge = _run(world, "noisy", 5, NOISE_UNIT="1e200")
    assert plain["status"] == huge["status"] == "found" and plain["first_bad"] == huge["first_bad"] == "1.5"
    assert [(p["version"], len(p["samples"])) for p in huge["probes"]] == \
        [(p["version"], len(p["samples"])) for p in plain["probes"]]
    proc = bisect_cli(*_argv(world, "noisy"), cwd=world[0], env=_env(5, NOISE_UNIT="inf"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "loss is inf" in proc.stdout + proc.stderr and "--threshold" in proc.stdout + proc.stderr


def test_sampling_mistake_is_one_line_error(world):
    """The CLI path of a conflicting setting (the rest are unit tests of sampling_for)."""
    proc = bisect_cli(*_argv(world, "noisy", "--retries", "2"), cwd=world[0], env=_env(0))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "drop --retries" in lines[0], proc.stderr


def test_endpoints_that_cannot_be_separated_stop_with_one_line(world):
    proc = bisect_cli(*_argv(world, "noisy", "--max-samples", "4"), cwd=world[0], env=_env(2, d=0))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 4 and len(lines) == 1 and "cannot be told apart by loss" in lines[0], proc.stderr
