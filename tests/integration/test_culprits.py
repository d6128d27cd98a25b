"""Culprit isolation and ``--deps as-of-release`` end to end on the combo index.

On 1 Aug plugin 2.1, drift 1.3 and core 2.2 all come out; the recipe decides which of
them is the planted culprit. The drift test runs on the HTML flavour of the index, so it
also proves that uv honours ``data-upload-time`` for ``--exclude-newer``.
"""

from __future__ import annotations

import pytest

from support.cli import bisect_cli
from support.combos import DAY_BEFORE, RELEASE_DAY, combo_recipe, start_combo_index


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("combo-culprits")
    started = {flavour: start_combo_index(root / flavour, flavour=flavour) for flavour in ("both", "html")}
    yield root, started
    for index in started.values():
        index.stop()


def _date_run(root, index, culprit, cache_name):
    recipe = combo_recipe(root / f"{culprit}_recipe.py", culprit)
    proc = bisect_cli("run", str(recipe), "--by", "date", "--since", "2024-02-01", "--index-url", index.url,
                      "--cache-dir", str(root / cache_name), "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    assert (proc.json["last_good"], proc.json["first_bad"]) == (DAY_BEFORE, RELEASE_DAY)
    return proc.json


def test_culprit_is_the_drifting_dependency(indexes):
    root, started = indexes
    res = _date_run(root, started["html"], "drift", "cache-html")
    assert res["culprits"] == [{"package": "drift", "from": "1.2", "to": "1.3"}]
    assert res["culprit"]["finding"] == "single"
    trials = {tuple(c["package"] for c in t["changes"]): t["verdict"] for t in res["culprit"]["trials"]}
    assert trials == {("core",): "good", ("drift",): "bad", ("plugin",): "good"}


def test_two_package_interaction_is_reported_as_such(indexes):
    root, started = indexes
    res = _date_run(root, started["both"], "both", "cache")
    assert res["culprit"]["finding"] == "combination"
    assert sorted(res["culprits"], key=lambda c: c["package"]) == [
        {"package": "drift", "from": "1.2", "to": "1.3"}, {"package": "plugin", "from": "2.0", "to": "2.1"}]
    assert "needs several changes together" in res["culprit"]["summary"]
    trials = {tuple(c["package"] for c in t["changes"]): t["verdict"] for t in res["culprit"]["trials"]}
    # Each alone is good; the search stopped at the first failing pair.
    assert trials[("core",)] == trials[("drift",)] == trials[("plugin",)] == "good"
    assert trials[("drift", "plugin")] == "bad"
    text = bisect_cli("show", str(res["run_id"]), "--cache-dir", str(root / "cache"), cwd=root).stdout
    assert "needs several changes together" in text


def test_deps_as_of_release_keeps_dependency_drift_from_being_blamed(indexes):
    """drift 1.2 (May) breaks plugins older than 2.0; plugin 2.1 (Aug) is the real bug.

    With today's dependencies every old plugin looks bad (drift is blamed on plugin:
    "the oldest release is already bad"); resolved as of each plugin release, only the
    planted release is bad.
    """
    root, started = indexes
    recipe = combo_recipe(root / "old_plugins_recipe.py", "old-plugins-break")
    base = ("run", str(recipe), "--package", "plugin", "--index-url", started["both"].url,
            "--cache-dir", str(root / "cache"), "--json")
    latest = bisect_cli(*base, cwd=root, check_json=True)
    assert latest.returncode == 5 and latest.json["status"] == "predates-range"
    assert latest.json["probes"][0]["resolved"]["drift"] == "1.4"

    dated = bisect_cli(*base, "--deps", "as-of-release", cwd=root, check_json=True)
    assert dated.returncode == 0, dated.stderr
    res = dated.json
    assert (res["last_good"], res["first_bad"]) == ("2.0", "2.1") and res["deps"] == "as-of-release"
    drift_at = {p["version"]: p["resolved"]["drift"] for p in res["probes"]}
    assert drift_at["1.0"] == "1.0" and drift_at["2.1"] == "1.2"  # as of each plugin release
    assert any("--deps as-of-release" in line for line in res["reproduce"])
