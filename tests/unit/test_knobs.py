"""Knobs and the knob search (envbisect.knobs, knobsearch, schema_knobs): pure, no subprocess.

The search runs against scripted oracles saying which sets of settings make the recipe
good; the tests check that it names exactly the planted knob(s), in ddmin's few probes,
keeps coarse switches apart, and never probes a set twice. The probe values are checked
to put every setting into the probe key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from envbisect.errors import RecipeError
from envbisect.knobs import BUILTIN, KNOBS_ENV, Knob, Setting, applicable, install_startup, label, probe_values, \
    recipe_knobs, select
from envbisect.knobsearch import Answer, narrow, rounds
from envbisect.recipes import parse_recipe_text
from envbisect.search import Verdict
from envbisect.probekey import probe_key


def env_knob(name, *values):
    return Knob(name, name, tuple(values), env=name)


def startup_knob(name, *values, coarse=False):
    return Knob(name, f"pkg.{name}", tuple(values), module="pkg.settings", target=name, coarse=coarse)


def oracle(rule, log):
    """GOOD when ``rule(settings as a dict)`` holds; every probed set is logged."""
    def test(settings):
        log.append(settings)
        return Verdict.GOOD if rule({s.knob: s.value for s in settings}) else Verdict.BAD
    return test


MANY = [env_knob(f"VAR_{i}", "0") for i in range(12)] + [startup_knob(f"opt_{i}", False) for i in range(4)]


@pytest.mark.parametrize("planted", ["VAR_0", "VAR_7", "VAR_11", "opt_2"])
def test_one_planted_knob_among_sixteen_is_named_alone_in_ddmin_probes(planted):
    log = []
    found = narrow(MANY, oracle(lambda s: planted in s, log))
    assert found.answer is Answer.SETTINGS
    assert [s.knob for s in found.minimal] == [planted] and found.also == () and found.coarse == ()
    # One all-at-once round, then ddmin: about 2 log2(16) probes, never the 16 singles.
    assert len(log) <= 1 + 2 * math.ceil(math.log2(len(MANY)))
    assert len({frozenset(x) for x in log}) == len(log)  # no set probed twice


def test_two_knobs_needed_together_are_both_named():
    log = []
    found = narrow(MANY, oracle(lambda s: "VAR_3" in s and "opt_1" in s, log))
    assert sorted(s.knob for s in found.minimal) == ["VAR_3", "opt_1"]
    assert len({frozenset(x) for x in log}) == len(log)


def test_coarse_switches_never_mask_the_fine_answer():
    backend = startup_knob("backend", "eager", "aot_eager", coarse=True)
    fine = [startup_knob("fallback_random", True), startup_knob("max_autotune", True)]
    log = []
    # Any non-inductor backend is good; under inductor only fallback_random is.
    found = narrow([backend, *fine], oracle(lambda s: "backend" in s or "fallback_random" in s, log))
    assert [s.knob for s in found.minimal] == ["fallback_random"]
    assert found.coarse == (Setting("backend", "eager"), Setting("backend", "aot_eager"))
    assert all(not ({s.knob for s in x} > {"backend"}) for x in log)  # backend always tried alone
    only_coarse = narrow([backend, *fine], oracle(lambda s: s.get("backend") == "eager", []))
    assert only_coarse.answer is Answer.COARSE and only_coarse.minimal == ()


def test_a_knob_with_several_values_is_tried_at_each_and_reports_the_others_that_work():
    knobs = [env_knob("TF_ENABLE_ONEDNN_OPTS", "1", "0"), env_knob("OTHER", "x")]
    assert rounds(knobs) == [[Setting("TF_ENABLE_ONEDNN_OPTS", "1"), Setting("OTHER", "x")],
                             [Setting("TF_ENABLE_ONEDNN_OPTS", "0"), Setting("OTHER", "x")]]
    found = narrow(knobs, oracle(lambda s: s.get("TF_ENABLE_ONEDNN_OPTS") == "0", []))
    assert found.minimal == (Setting("TF_ENABLE_ONEDNN_OPTS", "0"),)
    either = narrow([env_knob("BACKEND", "a", "b", "c")], oracle(lambda s: s.get("BACKEND") in ("a", "c"), []))
    assert either.minimal == (Setting("BACKEND", "a"),) and either.also == (Setting("BACKEND", "c"),)


def test_nothing_flips_it_and_no_knobs_apply():
    log = []
    none = narrow(MANY[:3], oracle(lambda s: False, log))
    assert none.answer is Answer.NONE and none.minimal == ()
    assert len(log) == 1 + 3  # all at once, then each alone (they may clash together)
    assert narrow([], oracle(lambda s: True, [])).answer is Answer.NO_KNOBS


def test_builtin_sets_apply_only_with_their_framework_and_can_be_selected():
    names = {k.name for k in applicable(BUILTIN, ["numpy", "tensorflow-macos", "tensorflow-metal"])}
    assert "tf.grappler.remapping" in names and not any(n.startswith("torch.") for n in names)
    torch_only = {k.name for k in applicable(BUILTIN, ["torch"])}
    assert {"torch.inductor.fallback_random", "torch.compile.backend"} <= torch_only
    assert not any(n.startswith("tf.") for n in torch_only)
    assert applicable(BUILTIN, ["numpy"]) == []
    picked = [k.name for k in select(BUILTIN, ["tf.grappler"])]
    assert "tf.grappler.remapping" in picked and "tf.onednn" not in picked
    assert [k.name for k in select(BUILTIN, ["tf.grappler.remapping"])] == ["tf.grappler.remapping"]


def test_settings_are_environment_values_and_so_part_of_the_probe_key():
    knobs = {k.name: k for k in [env_knob("KNOBBY_FAST_MATH", "0"), *applicable(BUILTIN, ["tensorflow"])]}
    remap = Setting("tf.grappler.remapping", False)
    values = probe_values([remap, Setting("KNOBBY_FAST_MATH", "0")], knobs)
    assert values["KNOBBY_FAST_MATH"] == "0"
    applied = json.loads(values[KNOBS_ENV])["apply"]
    assert applied == [{"knob": "tf.grappler.remapping", "module": "tensorflow", "action": "options",
                        "target": "config.optimizer.set_experimental_options", "key": "remapping", "value": False}]
    keys = {probe_key("r", "e", "h", v) for v in (
        {}, probe_values([remap], knobs), probe_values([Setting("tf.grappler.constant_folding", False)], knobs),
        probe_values([Setting("KNOBBY_FAST_MATH", "0")], knobs))}
    assert len(keys) == 4
    assert probe_values([], knobs) == {}
    assert label([remap], knobs) == 'knobs: tf.grappler.remapping=false' and label([], knobs) == "knobs: (none)"


def test_startup_hook_goes_into_the_probe_directory_and_its_path_only(tmp_path):
    environ = {"PATH": "/bin"}
    install_startup(tmp_path, environ)
    assert environ == {"PATH": "/bin"} and not (tmp_path / "knobs").exists()
    environ[KNOBS_ENV] = json.dumps({"apply": []})
    install_startup(tmp_path, environ)
    assert environ["PYTHONPATH"] == str(tmp_path / "knobs")
    assert (tmp_path / "knobs" / "sitecustomize.py").read_text().startswith('"""The start-up hook')


HEADER = '# /// script\n# dependencies = ["knobby"]\n# [tool.envbisect]\n# package = "knobby"\n'


def _recipe(knob_lines: str):
    text = HEADER + "# [tool.envbisect.knobs]\n" + "".join(f"# {line}\n" for line in knob_lines.splitlines()) + "# ///\n"
    return parse_recipe_text(text, Path("/r/recipe.py"))


def test_recipe_knobs_table_forms():
    rec = _recipe('TF_ENABLE_ONEDNN_OPTS = ["1", "0"]\n'
                  'onednn = {env = "TF_ENABLE_ONEDNN_OPTS", values = ["0"]}\n'
                  'fused = {module = "knobby.settings", attribute = "FUSED", values = [false, 2]}')
    knobs = {k.name: k for k in recipe_knobs(dict(rec.settings.knobs))}
    assert knobs["TF_ENABLE_ONEDNN_OPTS"].env == "TF_ENABLE_ONEDNN_OPTS"
    assert knobs["TF_ENABLE_ONEDNN_OPTS"].values == ("1", "0")
    assert knobs["onednn"].env == "TF_ENABLE_ONEDNN_OPTS" and knobs["onednn"].values == ("0",)
    assert (knobs["fused"].module, knobs["fused"].target, knobs["fused"].values) == ("knobby.settings", "FUSED",
                                                                                    (False, 2))


@pytest.mark.parametrize("line, needle", [
    ('X = "0"', "neither an array of values nor a table"),
    ("X = [0, 1]", "non-empty array of strings"),
    ("X = []", "non-empty array of strings"),
    ('GITHUB_TOKEN = ["x"]', "looks like a secret"),
    ('k = {env = "A B", values = ["0"]}', "not an environment variable name"),
    ('k = {module = "pkg", values = [false]}', "has keys module, values"),
    ('k = {module = "pkg;rm", attribute = "X", values = [false]}', "dotted Python names"),
])
def test_bad_knob_entries_are_one_line_errors_naming_the_knob_and_the_forms(line, needle):
    with pytest.raises(RecipeError) as caught:
        _recipe(line)
    message = str(caught.value)
    assert needle in message and "\n" not in message and "knobs: knob " in message
    assert "write VAR = " in message or "rename it" in message


def test_the_answer_reaches_the_summary_the_report_and_the_issue_comment():
    from envbisect import report
    from envbisect.findings import finding_for_run

    knobs = {"run_id": 9, "summary": "turning off Grappler's remapping makes tensorflow 2.16.1 good",
             "settings": [{"knob": "tf.grappler.remapping", "value": False}], "also": [],
             "coarse": [{"knob": "tf.grappler.all", "value": True}], "tried": ["tf.grappler.remapping"],
             "trials": [{"settings": [{"knob": "tf.grappler.remapping", "value": False}], "verdict": "good"}],
             "probes": 3, "executed": 2,
             "compiler_bisector": None}
    result = {"kind": "bisect", "status": "found", "package": "tensorflow", "last_good": "2.15.1",
              "first_bad": "2.16.1", "knobs": knobs}
    run = {"id": 1, "kind": "bisect", "status": "done", "recipe_path": "r.py", "recipe_hash": "ab", "result": result}
    assert any("knob: turning off Grappler's remapping makes tensorflow 2.16.1 good" in line
               for line in report.text_summary(result))
    body = finding_for_run(run, []).body
    assert "#### The knob that flips it" in body and "`tf.grappler.remapping=false`" in body
    assert "Coarser switches that are good too:** `tf.grappler.all=true`" in body
