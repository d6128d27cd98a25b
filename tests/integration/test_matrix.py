"""``bisect matrix`` end to end: real CLI, real uv, a real index on 127.0.0.1.

The combo index (tests/support/combos.py) serves core 1.0–2.2, plugin 1.x (core < 2) and
2.x (core >= 2), and drift. The recipe is bad when plugin >= 2.1 runs on core >= 2.1.
"""

from __future__ import annotations

import sqlite3

import pytest

from support.cli import bisect_cli
from support.combos import combo_recipe, start_combo_index


@pytest.fixture(scope="module")
def combo(tmp_path_factory):
    root = tmp_path_factory.mktemp("combo-matrix")
    index = start_combo_index(root)
    yield root, index
    index.stop()


def _rows(cache, run_id):
    con = sqlite3.connect(cache / "results.db")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("select * from probes where run_id = ? order by id", [run_id])]
    finally:
        con.close()


def test_matrix_marks_incompatible_pairs_without_running_and_finds_bad_cells(combo):
    root, index = combo
    recipe = combo_recipe(root / "matrix_recipe.py", "matrix")
    cache = root / "cache"
    proc = bisect_cli("matrix", str(recipe), "--axis", "core=>=1.1", "--axis", "plugin", "--index-url", index.url,
                      "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert [a["versions"] for a in res["axes"]] == [["1.1", "2.0", "2.1", "2.2"], ["1.0", "1.1", "2.0", "2.1"]]
    cells = {(c["versions"]["core"], c["versions"]["plugin"]): c for c in res["cells"]}
    assert len(cells) == 16
    incompatible = {k for k, c in cells.items() if c["outcome"] == "incompatible"}
    expected = {(core, plugin) for core in ("1.1", "2.0", "2.1", "2.2") for plugin in ("1.0", "1.1", "2.0", "2.1")
                if core.startswith("1") != plugin.startswith("1")}
    assert incompatible == expected and res["incompatible"] == 8
    # The resolver's reason is kept, and it names the conflicting requirement.
    assert "core" in cells[("1.1", "2.1")]["reason"] and cells[("1.1", "2.1")]["reason"].startswith("incompatible:")
    assert sorted(res["bad"]) == ["core==2.1, plugin==2.1", "core==2.2, plugin==2.1"]
    assert cells[("2.2", "2.1")]["metric"] == ["max_abs_diff", 41.7]
    assert res["executed"] == 8  # only the compatible cells ran the recipe
    rows = _rows(cache, res["run_id"])
    assert len(rows) == 16
    for row in rows:
        ran = row["exit_code"] is not None
        assert ran == (row["outcome"] != "incompatible"), row
        if not ran:
            assert row["log_path"] is None and row["resolved"] is None
    # No environment was built for an incompatible cell: only 8 env directories exist.
    assert len([p for p in (cache / "envs").iterdir() if not p.name.startswith(".")]) == 8

    # bisect show works on the matrix run: the grid, then every cell's probe row.
    show = bisect_cli("show", str(res["run_id"]), "--cache-dir", str(cache), cwd=root)
    assert show.returncode == 0, show.stderr
    assert "core \\ plugin" in show.stdout and "BAD max_abs_diff=41.7" in show.stdout
    assert show.stdout.count("incompatible") >= 8
    md = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(cache), cwd=root)
    assert md.returncode == 0 and "| 2.2 | incompatible | incompatible | good max_abs_diff=0 | BAD max_abs_diff=41.7 |" in md.stdout
    history = bisect_cli("history", "--cache-dir", str(cache), cwd=root)
    assert history.returncode == 0 and "matrix" in history.stdout

    # The same matrix again: every compatible cell is reused from the store, none re-run.
    again = bisect_cli("matrix", str(recipe), "--axis", "core=>=1.1", "--axis", "plugin", "--index-url", index.url,
                       "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert again.returncode == 0 and again.json["executed"] == 0 and again.json["bad"] == res["bad"]


def test_matrix_limit_and_with_pin(combo):
    root, index = combo
    recipe = combo_recipe(root / "matrix_recipe_limit.py", "matrix")
    proc = bisect_cli("matrix", str(recipe), "--axis", "core", "--axis", "plugin", "--limit", "2",
                      "--with", "drift==1.0", "--index-url", index.url, "--cache-dir", str(root / "cache-limit"),
                      "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert [a["versions"] for a in res["axes"]] == [["2.1", "2.2"], ["2.0", "2.1"]]
    assert res["incompatible"] == 0 and sorted(res["bad"]) == ["core==2.1, plugin==2.1", "core==2.2, plugin==2.1"]
    assert all(c["resolved"]["drift"] == "1.0" for c in res["cells"])  # the pin holds in every cell


def test_matrix_rejects_an_axis_that_is_also_pinned(combo):
    root, index = combo
    recipe = combo_recipe(root / "matrix_recipe_clash.py", "matrix")
    proc = bisect_cli("matrix", str(recipe), "--axis", "core", "--with", "core==2.0", "--index-url", index.url,
                      "--cache-dir", str(root / "cache-clash"), cwd=root)
    assert proc.returncode == 2 and "both an --axis and a --with pin" in proc.stderr
