"""``bisect run --by date`` end to end: real CLI, real uv ``--exclude-newer``, real index.

The combo index (tests/support/combos.py) publishes core, plugin and drift over 2024;
on 1 Aug plugin 2.1, drift 1.3 and core 2.2 all come out. With a recipe that is bad from
plugin 2.1 on, the first bad instant is 1 Aug, the last good 1 Jun, and culprit isolation
must single out plugin among the three packages that moved that day.
"""

from __future__ import annotations

import json

import pytest

from envbisect.bydate import instants, releases_of
from envbisect.index import IndexClient, IndexConfig
from envbisect.versions import Target
from support.cli import bisect_cli
from support.combos import ALL_DAYS, DAY_BEFORE, RELEASE_DAY, combo_recipe, start_combo_index
from support.db import rows


@pytest.fixture(scope="module")
def combo(tmp_path_factory):
    root = tmp_path_factory.mktemp("combo-date")
    index = start_combo_index(root)
    yield root, index
    index.stop()


def test_date_bisection_finds_first_bad_instant_and_names_the_plugin(combo):
    root, index = combo
    recipe = combo_recipe(root / "plugin_recipe.py", "plugin")
    cache = root / "cache"
    proc = bisect_cli("run", str(recipe), "--by", "date", "--since", "2024-02-01", "--index-url", index.url,
                      "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert res["kind"] == "date" and res["status"] == "found"
    assert (res["last_good"], res["first_bad"]) == (DAY_BEFORE, RELEASE_DAY)
    days = [d for d in ALL_DAYS if d > "2024-02-01"]
    assert [t["instant"] for t in res["timeline"]] == ["2024-02-01T00:00:00Z", *days]
    day = next(t for t in res["timeline"] if t["instant"] == RELEASE_DAY)
    assert {(r["package"], r["version"]) for r in day["releases"]} == {("plugin", "2.1"), ("drift", "1.3"), ("core", "2.2")}
    # The environments on either side of the boundary were resolved as of those days.
    probes = {p["version"]: p for p in res["probes"]}
    assert probes[DAY_BEFORE]["resolved"] == {"core": "2.1", "drift": "1.2", "plugin": "2.0"}
    assert probes[RELEASE_DAY]["resolved"] == {"core": "2.2", "drift": "1.3", "plugin": "2.1"}
    assert res["culprits"] == [{"package": "plugin", "from": "2.0", "to": "2.1"}]
    assert res["culprit"]["finding"] == "single"
    assert {c["package"] for c in res["culprit"]["changes"]} == {"core", "drift", "plugin"}
    assert res["culprit_probes"] == 3  # each of the three changes alone on the last good env
    # A date search builds ahead too: a later instant's env was built while the probe
    # before it ran (every instant here resolves to another env, so without building ahead
    # each probe builds its own).
    searched = [r for r in rows(cache / "results.db") if not r["version"].startswith("culprit")]
    assert len({r["lock_hash"] for r in searched}) == len(searched) >= 3, searched
    assert any(not r["env_build_s"] for r in searched[1:]), [(r["version"], r["env_build_s"]) for r in searched]

    show = bisect_cli("show", str(res["run_id"]), "--cache-dir", str(cache), cwd=root)
    assert show.returncode == 0 and "culprit: plugin 2.0 → 2.1" in show.stdout
    md = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(cache), cwd=root).stdout
    assert f"| {RELEASE_DAY} |" in md and "#### Culprit" in md and "| plugin | 2.0 | 2.1 | **yes** |" in md
    as_json = json.loads(bisect_cli("report", str(res["run_id"]), "--format", "json", "--cache-dir", str(cache),
                                    cwd=root).stdout)
    assert as_json["culprits"] == res["culprits"]

    # The same question again resumes nothing and re-runs nothing: every probe is reused.
    again = bisect_cli("run", str(recipe), "--by", "date", "--since", "2024-02-01", "--index-url", index.url,
                       "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert again.json["executed"] == 0 and again.json["culprits"] == res["culprits"]


def test_until_before_the_release_day_is_not_reproduced(combo):
    root, index = combo
    recipe = combo_recipe(root / "plugin_recipe.py", "plugin")
    proc = bisect_cli("run", str(recipe), "--by", "date", "--since", "2024-05-01", "--until", "2024-07-31",
                      "--index-url", index.url, "--cache-dir", str(root / "cache"), "--json", cwd=root, check_json=True)
    assert proc.returncode == 3, proc.stderr
    assert proc.json["status"] == "not-reproduced" and proc.json["culprits"] == []
    assert [t["instant"] for t in proc.json["timeline"]] == ["2024-05-01T00:00:00Z", "2024-05-10", "2024-06-01"]


def test_axis_chooses_the_packages_that_make_the_timeline(combo):
    root, index = combo
    recipe = combo_recipe(root / "plugin_recipe.py", "plugin")
    proc = bisect_cli("run", str(recipe), "--by", "date", "--axis", "plugin=>=2", "--index-url", index.url,
                      "--cache-dir", str(root / "cache"), "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    assert [t["instant"] for t in proc.json["timeline"]] == ["2024-04-15", RELEASE_DAY]
    assert proc.json["first_bad"] == RELEASE_DAY


def test_date_flags_that_do_not_fit_are_refused(combo):
    root, index = combo
    recipe = combo_recipe(root / "plugin_recipe.py", "plugin")
    proc = bisect_cli("run", str(recipe), "--since", "2024-01-01", "--index-url", index.url,
                      "--cache-dir", str(root / "cache"), cwd=root)
    assert proc.returncode == 2 and "apply to --by date" in proc.stderr


@pytest.mark.parametrize("flavour", ["json", "html"])
def test_instants_come_from_upload_times_in_both_index_flavours(tmp_path, flavour):
    index = start_combo_index(tmp_path, flavour=flavour)
    try:
        with IndexClient(IndexConfig(index.url)) as client:
            files = {p: client.project_files(p) for p in ("core", "plugin", "drift")}
    finally:
        index.stop()
    timeline = instants(releases_of(files, Target.host()))
    assert tuple(t.label for t in timeline) == ALL_DAYS
    assert len(next(t for t in timeline if t.label == RELEASE_DAY).releases) == 3
