"""Fail fast and answer honestly: real CLI runs against a real index on 127.0.0.1.

Each test guards a defect of the first build: a syntax error built every env before
failing; an impossible ``--with`` pin cost one probe per candidate; a hanging recipe was
run on every candidate; an untestable stretch of old releases was walked one release at
a time and then reported as "predates the range"; a yanked release between the boundary
went unmentioned; a ``--threshold`` on a missing metric silently fell back to the exit
status; a ``--package`` the recipe does not use was bisected anyway.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from support.cli import assert_one_line_error, bisect_cli, write_recipe
from support.wheels import build_wheel

#: toypkg releases 1.0 .. 1.31, oldest first.
VERSIONS = [f"1.{i}" for i in range(32)]

TOY_BODY = """
import sys
import toypkg
sys.exit(0 if toypkg.VALUE == 1 else 1)
"""


@pytest.fixture(scope="module")
def toy_dists(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Wheels of toypkg per (version, kind): kind "good" (VALUE 1), "bad" (VALUE 2) or
    "broken" (importing it raises ImportError, as an old release against a new numpy)."""
    out = {}
    for kind, body in (("good", "VALUE = 1\n"), ("bad", "VALUE = 2\n"),
                       ("broken", 'raise ImportError("toypkg was built against numpy 1.x")\n')):
        dest = tmp_path_factory.mktemp(f"toy-{kind}")
        for v in VERSIONS:
            out[v, kind] = build_wheel(dest, "toypkg", v, files={"toypkg/__init__.py": body})
    return out


@pytest.fixture
def toy_index(local_index, toy_dists):
    """Factory: ``toy_index({version: kind}, yanked={...})`` -> a started index."""
    def make(kinds: dict[str, str], yanked: tuple[str, ...] = ()):
        index = local_index()
        for v, kind in kinds.items():
            index.add(toy_dists[v, kind], yanked="broken build" if v in yanked else False)
        return index
    return make


def _run(tmp_path: Path, index, *args: str, recipe: Path | None = None, body: str = TOY_BODY, **recipe_kw):
    recipe = recipe or write_recipe(tmp_path / "r.py", body, package="toypkg", deps=("toypkg",), **recipe_kw)
    return bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(tmp_path / "cache"),
                      *args, cwd=tmp_path, check_json="--json" in args)


def _envs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache" / "envs"
    return [p for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []


def test_a_syntax_error_is_one_line_before_any_environment(tmp_path, toy_index):
    index = toy_index({v: "good" for v in VERSIONS[:4]})
    proc = _run(tmp_path, index, body="import toypkg\nif True\n    pass\n")
    assert proc.returncode == 2
    assert_one_line_error(proc, "does not compile", "line 8", "no environment was built")
    assert _envs(tmp_path) == []
    assert not any(h.path.startswith("/files/") for h in index.log), "nothing may be downloaded"


def test_an_impossible_with_pin_costs_one_resolve_not_a_probe_per_candidate(tmp_path, toy_index):
    index = toy_index({v: "good" for v in VERSIONS[:8]})
    proc = _run(tmp_path, index, "--with", "scipy==0.0.1")
    assert proc.returncode == 2
    assert_one_line_error(proc, "--with scipy==0.0.1 cannot be installed")
    assert len([h for h in index.log if h.path == "/simple/scipy/"]) <= 1
    assert _envs(tmp_path) == []


def test_a_hanging_recipe_stops_after_both_ends_time_out(tmp_path, toy_index):
    index = toy_index({v: "good" for v in VERSIONS[:12]})
    proc = _run(tmp_path, index, "--json", body="import time, toypkg\ntime.sleep(600)\n", timeout=1)
    assert proc.returncode == 4, proc.stderr
    res = proc.json
    assert res["status"] == "inconclusive" and len(res["probes"]) == 2
    assert {p["version"] for p in res["probes"]} == {"1.0", "1.11"}
    assert "timed out" in res["stopped"]["reason"] and "--timeout" in res["stopped"]["fix"]
    text = _run(tmp_path, index, body="import time, toypkg\ntime.sleep(600)\n", timeout=1)
    assert "stopped: both ends of the range are untestable for the same reason" in text.stdout
    assert "untestable: 1.0 and 1.11: timed out" in text.stdout, "identical reasons are collapsed"


def test_an_untestable_stretch_of_old_releases_is_crossed_by_bisection(tmp_path, toy_index):
    kinds = {v: "broken" if i < 16 else ("good" if i < 24 else "bad") for i, v in enumerate(VERSIONS)}
    proc = _run(tmp_path, toy_index(kinds), "--json")
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert (res["last_good"], res["first_bad"]) == ("1.23", "1.24")
    broken = [p for p in res["probes"] if p["verdict"] == "untestable" and p["version"] != "1.0"]
    assert len(broken) <= math.ceil(math.log2(16)) + 1, [p["version"] for p in broken]
    assert len(res["probes"]) <= math.ceil(math.log2(32)) + 2
    assert len(res["untestable_groups"]) == 1 and "ImportError" in res["untestable_groups"][0]["reason"]


def test_untestable_old_releases_are_inconclusive_with_a_hint_never_predates_range(tmp_path, toy_index):
    kinds = {v: "broken" if i < 8 else "bad" for i, v in enumerate(VERSIONS[:16])}
    proc = _run(tmp_path, toy_index(kinds), "--json")
    assert proc.returncode == 4, proc.stderr
    res = proc.json
    assert (res["status"], res["untestable_edge"], res["first_bad"]) == ("inconclusive", "old", "1.8")
    assert "older than 1.8 could not be tested" in res["hint"] and "--deps as-of-release" in res["hint"]
    text = _run(tmp_path, toy_index(kinds))
    assert "the older releases could not be tested" in text.stdout.splitlines()[0]
    assert "predates" not in text.stdout


def test_releases_left_out_between_the_boundary_are_named(tmp_path, toy_index):
    kinds = {v: "good" if i < 3 else "bad" for i, v in enumerate(VERSIONS[:8])}
    index = toy_index(kinds, yanked=("1.3",))
    proc = _run(tmp_path, index, "--json")
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert (res["last_good"], res["first_bad"]) == ("1.2", "1.4")
    assert res["excluded_between"] == [{"version": "1.3", "reason": "yanked"}]
    text = _run(tmp_path, index)
    assert "not tested: 1.3 (yanked) lie between 1.2 and 1.4" in text.stdout
    md = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert "1.3 (yanked) lie between 1.2 and 1.4" in md.stdout


def test_a_threshold_on_a_missing_metric_is_an_error_the_summary_names(tmp_path, toy_index):
    index = toy_index({v: "good" for v in VERSIONS[:4]})
    proc = _run(tmp_path, index, "--threshold", "max_abs_diff>1e-3")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "threshold metric max_abs_diff missing or not a number" in proc.stdout


def test_a_package_the_recipe_does_not_use_is_an_error(tmp_path, toy_index, wheel_dir):
    index = toy_index({v: "good" for v in VERSIONS[:4]})
    index.add(build_wheel(wheel_dir, "otherpkg", "1.0"))
    proc = _run(tmp_path, index, "--package", "otherpkg")
    assert proc.returncode == 2
    assert_one_line_error(proc, "--package otherpkg is not among the recipe's dependencies (toypkg)")
