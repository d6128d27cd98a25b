"""Matrix pieces that need no subprocess: --axis parsing, cell labels, the main metric,
and the text/Markdown grid renderings of a stored matrix result."""

from __future__ import annotations

import pytest

from envbisect.errors import ConfigError
from envbisect.matrix import Axis, CellOutcome, cell_label, main_metric
from envbisect.report import markdown, text_summary
from envbisect.report_matrix import grid


@pytest.mark.parametrize("text, expected", [
    ("tensorflow", Axis("tensorflow")),
    ("core=>=2,<3", Axis("core", ">=2,<3")),
    ("core>=2", Axis("core", ">=2")),
    ("core==2.1", Axis("core", "==2.1")),
    ("tensorflow-metal = ~=1.1", Axis("tensorflow-metal", "~=1.1")),
])
def test_axis_parse(text, expected):
    assert Axis.parse(text) == expected


@pytest.mark.parametrize("text", ["", "=>=2", "core=>>2", "core=>=1,,<2"])
def test_axis_parse_rejects_bad_input_with_a_fix(text):
    with pytest.raises(ConfigError, match="axis|range"):
        Axis.parse(text)


def test_cell_label_and_main_metric():
    assert cell_label({"core": "2.1", "plugin": "0.9"}) == "core==2.1, plugin==0.9"
    assert main_metric({"device": "GPU:0", "ok": True, "max_abs_diff": 41.7, "n": 3}) == ("max_abs_diff", 41.7)
    assert main_metric({"device": "GPU:0"}) is None and main_metric(None) is None


def _cell(core, plugin, outcome, metric=None):
    return {"versions": {"core": core, "plugin": plugin}, "label": cell_label({"core": core, "plugin": plugin}),
            "outcome": outcome, "metric": metric}


RESULT = {
    "run_id": 7, "kind": "matrix", "status": "done",
    "axes": [{"package": "core", "spec": None, "versions": ["1.0", "2.0"]},
             {"package": "plugin", "spec": None, "versions": ["1.0", "2.0"]}],
    "cells": [_cell("1.0", "1.0", "good", ["max_abs_diff", 0.0]), _cell("1.0", "2.0", CellOutcome.INCOMPATIBLE.value),
              _cell("2.0", "1.0", CellOutcome.INCOMPATIBLE.value), _cell("2.0", "2.0", "bad", ["max_abs_diff", 41.7])],
    "bad": ["core==2.0, plugin==2.0"], "incompatible": 2, "executed": 2, "reproduce": ["bisect matrix r.py"],
}


def test_two_axes_render_as_a_grid_one_axis_per_dimension():
    header, rows = grid(RESULT)
    assert header == ["core \\ plugin", "1.0", "2.0"]
    assert rows[0] == ["1.0", "good max_abs_diff=0", "incompatible"]
    assert rows[1] == ["2.0", "incompatible", "BAD max_abs_diff=41.7"]
    text = "\n".join(text_summary(RESULT))
    assert "bad in core==2.0, plugin==2.0" in text and "2 incompatible" in text


def test_three_axes_render_one_row_per_combination():
    result = dict(RESULT, axes=[*RESULT["axes"], {"package": "drift", "spec": None, "versions": ["1.0"]}])
    result["cells"] = [dict(c, versions=dict(c["versions"], drift="1.0")) for c in RESULT["cells"]]
    header, rows = grid(result)
    assert header == ["core", "plugin", "drift", "outcome"] and len(rows) == 4
    assert rows[3] == ["2.0", "2.0", "1.0", "BAD max_abs_diff=41.7"]


def test_markdown_of_a_matrix_run_has_the_grid_and_the_probe_table():
    run = {"id": 7, "kind": "matrix", "recipe_path": "r.py", "recipe_hash": "ab" * 32, "result": RESULT}
    probes = [{"seq": 0, "attempt": 0, "version": "core==1.0, plugin==2.0", "outcome": "incompatible",
               "reason": "incompatible: plugin 2.0 needs core>=2"}]
    md = markdown(run, probes)
    assert "| core \\ plugin | 1.0 | 2.0 |" in md
    assert "| 2.0 | incompatible | BAD max_abs_diff=41.7 |" in md
    assert "core==1.0, plugin==2.0 | incompatible" in md
    assert "Reproduce with:" in md
