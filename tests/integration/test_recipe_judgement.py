"""The recipes' verdicts, exit codes and metrics files, as real subprocesses.

Three layers, from always-on to opt-in:

1. A small driver script loads each recipe in a fresh interpreter, feeds its pure
   ``judge`` healthy numbers or numbers with a planted error, and leaves through the
   recipe's own ``finish`` (summary, ``$ENVBISECT_RESULT``, exit code): 0 healthy, 1
   planted. No TensorFlow or torch needed.
2. The recipes run for real in this interpreter, which lacks TensorFlow/torch: a missing
   library or a malformed env var must exit 2 (error), never 1 (Python's status for an
   uncaught exception, which would read as "bad").
3. The recipes run end to end with their self-test knobs in an interpreter that has the
   library (``ENVBISECT_TEST_TF_PYTHON`` / ``ENVBISECT_TEST_TORCH_PYTHON``, or this one
   if it has it); skipped with a reason otherwise. Marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.frameworks import TF_PINS, env_python, torch_pins

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
KNOB_PREFIXES = ("FDR_", "KLM_", "ADDMM_", "ENVBISECT_RESULT")

DRIVER = """\
import importlib.util, json, sys
path, payload = sys.argv[1], json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("recipe_under_test", path)
recipe = importlib.util.module_from_spec(spec)
sys.modules["recipe_under_test"] = recipe
spec.loader.exec_module(recipe)
kwargs = payload["kwargs"]
if "results" in kwargs:
    kwargs["results"] = [recipe.LayerResult(**row) for row in kwargs["results"]]
code, metrics = recipe.judge(**kwargs)
sys.exit(recipe.finish(code, metrics, "driver: judged"))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus any recipe knob a developer left set, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(KNOB_PREFIXES)}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run_recipe(python: str, args: list[str], tmp_path: Path, timeout: float, **knobs: str):
    """Run ``python args`` with the knobs; return (exit code, metrics or None, output)."""
    result_file = tmp_path / "metrics.json"
    result_file.unlink(missing_ok=True)
    proc = subprocess.run(
        [python, *args], env=clean_env(ENVBISECT_RESULT=str(result_file), **knobs),
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
    )
    metrics = json.loads(result_file.read_text()) if result_file.exists() else None
    return proc.returncode, metrics, proc.stdout + proc.stderr


def fdr_case(plant: float) -> dict:
    noise, scale = 3e-6, 180.0
    return {"diffs": {"fused": [noise + plant, scale], "addv2": [noise, scale], "no_relu": [noise, scale]}}


def klm_case(plant_missing: bool) -> dict:
    rows = [{"name": n, "expected": True, "available": True, "where": "keras.layers", "device": "GPU:0",
             "max_abs_diff": 1e-7, "scale": 2.0} for n in ("Dense", "Resizing")]
    rows.append({"name": "GroupNormalization", "expected": True, "available": not plant_missing})
    return {"results": rows, "compared_on": "/GPU:0"}


JUDGE_CASES = {
    "fused_dense_relu.py": (fdr_case(0.0), fdr_case(30.0)),
    "inductor_addmm.py": (
        {"eager_determinism": 0.0, "max_abs_diff": 1.5e-3, "scale": 3900.0},
        {"eager_determinism": 0.0, "max_abs_diff": 1000.0, "scale": 3900.0},
    ),
    "keras_layers_on_metal.py": (klm_case(False), klm_case(True)),
}


@pytest.mark.parametrize("filename", sorted(JUDGE_CASES))
@pytest.mark.parametrize(("planted", "expected_code", "verdict"), [(False, 0, "good"), (True, 1, "bad")])
def test_judge_in_a_subprocess(tmp_path, filename, planted, expected_code, verdict):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    case = JUDGE_CASES[filename][planted]
    code, metrics, output = run_recipe(
        sys.executable, [str(driver), str(RECIPES_DIR / filename), json.dumps({"kwargs": case})], tmp_path, 60
    )
    assert code == expected_code, output
    assert metrics is not None and metrics["verdict"] == verdict
    assert "driver: judged" in output


@pytest.mark.parametrize(
    ("filename", "module", "knobs"),
    [
        ("fused_dense_relu.py", "tensorflow", {}),
        ("keras_layers_on_metal.py", "tensorflow", {}),
        ("inductor_addmm.py", "torch", {}),
        ("fused_dense_relu.py", None, {"FDR_M": "sixty-four"}),
        ("keras_layers_on_metal.py", None, {"KLM_RTOL": "tight"}),
    ],
)
def test_broken_environment_is_an_error_not_bad(tmp_path, filename, module, knobs):
    if module and importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here; this test needs an interpreter without it")
    code, metrics, output = run_recipe(sys.executable, [str(RECIPES_DIR / filename)], tmp_path, 60, **knobs)
    assert code == 2, output
    assert metrics is None
    expected = f"No module named '{module}'" if module else "is not a valid"
    assert expected in output


# --- end to end, with the real library ---------------------------------------


def interpreter_with(module: str, env_var: str, build) -> str:
    """An interpreter that can import ``module``: ``$env_var``, this one, or the env that
    ``bisect check`` builds in the suite's reusable cache (``build``); else skip."""
    python = os.environ.get(env_var)
    if python:
        return python
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    python = build()
    if python is None:
        pytest.skip(f"{module} is not available here; set {env_var} to an interpreter that has it")
    return python


@pytest.fixture(scope="module")
def tf_python():
    return interpreter_with("tensorflow", "ENVBISECT_TEST_TF_PYTHON",
                            lambda: env_python("fused_dense_relu.py", TF_PINS))


@pytest.fixture(scope="module")
def torch_python():
    pins = torch_pins()
    return interpreter_with("torch", "ENVBISECT_TEST_TORCH_PYTHON",
                            lambda: None if pins is None else env_python("inductor_addmm.py", pins))


SMALL_FDR = {"FDR_M": "8", "FDR_K": "256", "FDR_N": "64", "FDR_REQUIRE_GPU": "0"}


@pytest.mark.slow
@pytest.mark.parametrize(("plant", "expected_code", "diagnosis"), [("0", 0, "agree"), ("30", 1, "fused_kernel")])
def test_fused_dense_relu_end_to_end(tmp_path, tf_python, plant, expected_code, diagnosis):
    code, metrics, output = run_recipe(
        tf_python, [str(RECIPES_DIR / "fused_dense_relu.py")], tmp_path, 300, FDR_PLANT_ERROR=plant, **SMALL_FDR
    )
    assert code == expected_code, output
    assert metrics["diagnosis"] == diagnosis and metrics["shape"] == [8, 256, 64]
    assert metrics["addv2_max_rel_diff"] <= 1e-3 and metrics["no_relu_max_rel_diff"] <= 1e-3
    if not metrics["gpu_present"]:
        assert "no GPU" in metrics["note"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("knobs", "expected_code", "key"),
    [
        ({}, 0, None),
        ({"KLM_PLANT_ERROR": "1"}, 1, "diverged"),
        ({"KLM_PLANT_MISSING": "GroupNormalization"}, 1, "missing"),
    ],
)
def test_keras_layers_end_to_end(tmp_path, tf_python, knobs, expected_code, key):
    # Comparing the CPU against itself exercises the comparison path on any machine.
    code, metrics, output = run_recipe(
        tf_python, [str(RECIPES_DIR / "keras_layers_on_metal.py")], tmp_path, 300,
        KLM_COMPARE_DEVICE="/CPU:0", KLM_REQUIRE_GPU="0", **knobs,
    )
    assert code == expected_code, output
    assert len(metrics["layers"]) >= 10
    if key is None:
        assert all(row["ok"] and row["max_rel_diff"] == 0.0 for row in metrics["layers"])
    else:
        assert metrics[key]


@pytest.mark.slow
def test_inductor_addmm_end_to_end(tmp_path, torch_python):
    knobs = {"ADDMM_DEVICE": "cpu", "ADDMM_BATCH": "1"}
    code, metrics, output = run_recipe(torch_python, [str(RECIPES_DIR / "inductor_addmm.py")], tmp_path, 600, **knobs)
    if code == 125:
        pytest.skip(f"inductor cannot run here: {metrics.get('reason')}")
    assert code == 0, output
    assert metrics["eager_determinism"] == 0.0 and metrics["rel_error"] <= 1e-2
    # Planted: the second run hits Inductor's on-disk cache, so it costs little.
    code, metrics, output = run_recipe(
        torch_python, [str(RECIPES_DIR / "inductor_addmm.py")], tmp_path, 600, ADDMM_PLANT_ERROR="1e6", **knobs
    )
    assert code == 1, output
    assert metrics["verdict"] == "bad" and metrics["rel_error"] > 1e-2
