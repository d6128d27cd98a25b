"""The shipped recipes are valid recipes, and their pure judges decide as documented.

Each recipe is parsed with envbisect's own ``load_recipe`` (so a block envbisect would
reject fails here first), its imports are checked against its declared dependencies
(a recipe that imports something it does not declare fails in a fresh environment),
and its ``judge`` function is imported and exercised without TensorFlow or torch,
which this interpreter does not have: that also proves the heavy imports stay inside
``main()``.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name

from envbisect.recipes import load_recipe

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
OWN_RECIPES = ("fused_dense_relu.py", "keras_layers_on_metal.py", "inductor_addmm.py")
ALL_RECIPES = (*OWN_RECIPES, "packaging_legacy_version.py")

#: import name -> the distribution that provides it (keras comes with tensorflow).
PROVIDED_BY = {
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "tensorflow_metal": "tensorflow-metal",
    "numpy": "numpy",
    "torch": "torch",
    "packaging": "packaging",
}


def load_module(filename: str) -> ModuleType:
    """Import a recipe by path under a private name (registered while it executes,
    because dataclasses look their module up in ``sys.modules``)."""
    name = f"_recipe_{Path(filename).stem}"
    spec = importlib.util.spec_from_file_location(name, RECIPES_DIR / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def third_party_imports(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import in ``tree`` that is not stdlib."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}


@pytest.mark.parametrize("filename", ALL_RECIPES)
def test_block_parses_and_names_a_package_it_depends_on(filename):
    recipe = load_recipe(RECIPES_DIR / filename)
    package = recipe.settings.package
    assert package, f"{filename}: [tool.envbisect] package is not set"
    assert canonicalize_name(package) in recipe.dependency_names()
    assert recipe.requires_python is not None and recipe.requires_python.contains("3.11")


@pytest.mark.parametrize("filename", ALL_RECIPES)
def test_every_imported_third_party_package_is_declared(filename):
    recipe = load_recipe(RECIPES_DIR / filename)
    imported = third_party_imports(ast.parse(recipe.text))
    unknown = imported - PROVIDED_BY.keys()
    assert not unknown, f"{filename} imports {unknown}: add them to PROVIDED_BY and to the recipe's dependencies"
    needed = {canonicalize_name(PROVIDED_BY[name]) for name in imported}
    assert needed <= set(recipe.dependency_names()), f"{filename}: undeclared {needed - set(recipe.dependency_names())}"


@pytest.mark.parametrize("filename", OWN_RECIPES)
def test_module_level_imports_are_stdlib_only(filename):
    tree = ast.parse((RECIPES_DIR / filename).read_text(encoding="utf-8"))
    top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    assert third_party_imports(top) == set()


@pytest.mark.parametrize("filename", OWN_RECIPES)
def test_every_env_var_read_is_documented(filename):
    text = (RECIPES_DIR / filename).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(text))
    read = set(re.findall(r'(?:env_number\(|environ\.get\()"([A-Z0-9_]+)"', text))
    assert read, f"{filename} reads no env vars?"
    assert {v for v in read if v not in doc} == set()


@pytest.mark.parametrize("filename", OWN_RECIPES)
def test_recipes_import_without_their_heavy_dependencies(filename):
    before = set(sys.modules)
    module = load_module(filename)
    assert callable(module.judge) and callable(module.run)
    assert not {"tensorflow", "torch", "numpy"} & (set(sys.modules) - before)


# --- fused_dense_relu ------------------------------------------------------------

NOISE = 2e-6  # float32 reassociation noise on an output scale of ~200


def fdr_diffs(fused=NOISE, addv2=NOISE, no_relu=NOISE, scale=200.0):
    return {"fused": (fused, scale), "addv2": (addv2, scale), "no_relu": (no_relu, scale)}


@pytest.fixture(scope="module")
def fdr():
    return load_module("fused_dense_relu.py")


def test_fused_judge_agrees_on_noise(fdr):
    code, metrics = fdr.judge(fdr_diffs())
    assert code == fdr.GOOD and metrics["diagnosis"] == "agree" and metrics["diverged"] == []
    assert metrics["fused_max_rel_diff"] == pytest.approx(NOISE / 200)


@pytest.mark.parametrize(
    ("diffs", "diagnosis", "diverged"),
    [
        (fdr_diffs(fused=30.0), "fused_kernel", ["fused"]),
        (fdr_diffs(fused=30.0, addv2=12.0), "graph_mode_general", ["fused", "addv2"]),
        (fdr_diffs(no_relu=5.0), "control_only", ["no_relu"]),
        (fdr_diffs(fused=math.nan), "fused_kernel", ["fused"]),
    ],
)
def test_fused_judge_flags_each_divergence(fdr, diffs, diagnosis, diverged):
    code, metrics = fdr.judge(diffs)
    assert (code, metrics["diagnosis"], metrics["diverged"]) == (fdr.BAD, diagnosis, diverged)


def test_fused_judge_threshold_is_inclusive_and_relative(fdr):
    assert fdr.judge(fdr_diffs(fused=0.2, scale=200.0), rtol=1e-3)[0] == fdr.GOOD
    assert fdr.judge(fdr_diffs(fused=0.2001, scale=200.0), rtol=1e-3)[0] == fdr.BAD
    assert fdr.judge(fdr_diffs(fused=0.2001, scale=2000.0), rtol=1e-3)[0] == fdr.GOOD


def test_fused_judge_zero_scale(fdr):
    assert fdr.judge(fdr_diffs(fused=0.0, addv2=0.0, no_relu=0.0, scale=0.0))[0] == fdr.GOOD
    assert fdr.judge(fdr_diffs(fused=1.0, addv2=0.0, no_relu=0.0, scale=0.0))[0] == fdr.BAD


def test_short_device(fdr):
    assert fdr.short_device("/job:localhost/replica:0/task:0/device:GPU:0") == "GPU:0"


# --- inductor_addmm ---------------------------------------------------------------


@pytest.fixture(scope="module")
def addmm():
    return load_module("inductor_addmm.py")


def test_addmm_report_figures_pass_default_and_fail_strict(addmm):
    # The report: max_diff 1.573 on outputs up to 4031.81 (3.9e-4 relative), eager exact.
    code, metrics = addmm.judge(0.0, 1.573486, 4031.81)
    assert code == addmm.GOOD and metrics["rel_error"] == pytest.approx(3.9027e-4, rel=1e-3)
    assert addmm.judge(0.0, 1.573486, 4031.81, rtol=1e-5)[0] == addmm.BAD


def test_addmm_real_bug_and_nan_are_bad(addmm):
    assert addmm.judge(0.0, 1000.0, 4000.0)[0] == addmm.BAD
    assert addmm.judge(0.0, math.nan, 4000.0)[0] == addmm.BAD


def test_addmm_nondeterministic_eager_cannot_be_judged(addmm):
    code, metrics = addmm.judge(30.0, 1000.0, 4000.0, rtol=1e-2)  # noise 7.5e-3 > rtol/2
    assert code == addmm.SKIP and "reason" in metrics
    assert addmm.judge(1.0, 1.0, 4000.0, rtol=1e-2)[0] == addmm.GOOD  # noise 2.5e-4: fine


@pytest.mark.parametrize(
    ("message", "toolchain"),
    [
        ("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx", True),
        ("RuntimeError: Cannot find a working triton installation.", True),
        ("RuntimeError: Python 3.12+ not yet supported for torch.compile", True),
        ("AssertionError: wrong stride in generated kernel", False),
    ],
)
def test_addmm_toolchain_failures_are_recognised(addmm, message, toolchain):
    assert addmm.is_toolchain_failure(RuntimeError(message)) is toolchain


# --- keras_layers_on_metal ------------------------------------------------------


@pytest.fixture(scope="module")
def klm():
    return load_module("keras_layers_on_metal.py")


def layer(klm, name="Dense", **kw):
    fields = {"expected": True, "available": True, "where": "keras.layers", "device": "GPU:0",
              "max_abs_diff": 1e-7, "scale": 3.0}
    fields.update(kw)
    return klm.LayerResult(name, **fields)


def test_keras_judge_good_table(klm):
    code, metrics = klm.judge([layer(klm), layer(klm, "Conv2D")], compared_on="/GPU:0")
    assert code == klm.GOOD and metrics["gpu_tested"] is True
    assert [row["ok"] for row in metrics["layers"]] == [True, True]


@pytest.mark.parametrize(
    ("row", "key"),
    [
        ({"available": False, "where": None, "device": None, "max_abs_diff": None}, "missing"),
        ({"error": "ValueError: no kernel"}, "errors"),
        ({"max_abs_diff": 0.5}, "diverged"),
        ({"max_abs_diff": math.nan}, "diverged"),
    ],
)
def test_keras_judge_bad_rows(klm, row, key):
    code, metrics = klm.judge([layer(klm), layer(klm, "GroupNormalization", **row)], compared_on="/GPU:0")
    assert code == klm.BAD and metrics[key] == ["GroupNormalization"]
    assert [r["ok"] for r in metrics["layers"]] == [True, False]


def test_keras_layer_not_expected_in_this_version_is_not_missing(klm):
    row = layer(klm, "GroupNormalization", expected=False, available=False, where=None, max_abs_diff=None)
    code, metrics = klm.judge([row], compared_on=None)
    assert (code, metrics["missing"], metrics["layers"][0]["ok"]) == (klm.GOOD, [], True)


def test_keras_fallback_is_reported_and_bad_only_on_request(klm):
    rows = [layer(klm, "Resizing", device="CPU:0")]
    code, metrics = klm.judge(rows, compared_on="/GPU:0")
    assert code == klm.GOOD and metrics["cpu_fallback"] == ["Resizing"]
    assert klm.judge(rows, compared_on="/GPU:0", fail_on_fallback=True)[0] == klm.BAD


def test_keras_without_comparison_checks_availability_only(klm):
    rows = [layer(klm, device="CPU:0", max_abs_diff=None, scale=None)]
    code, metrics = klm.judge(rows, compared_on=None)
    assert (code, metrics["gpu_tested"], metrics["cpu_fallback"]) == (klm.GOOD, False, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.15.0-tf", (2, 15, 0)), ("3.0.0rc1", (3, 0, 0)), ("2.6", (2, 6)), ("", ())],
)
def test_keras_version_tuple(klm, text, expected):
    assert klm.version_tuple(text) == expected


def test_keras_layer_table_is_well_formed(klm):
    assert {"Dense", "Conv2D", "RandomFlip", "EinsumDense", "GroupNormalization"} <= set(klm.LAYERS)
    for since, kwargs, kind, inference in klm.LAYERS.values():
        assert since >= (2, 0) and isinstance(kwargs, dict) and kind in {"vec", "img", "ids"}
        assert isinstance(inference, bool)
