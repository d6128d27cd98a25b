"""``bisect narrow`` with the built-in knob sets, on real torch and TensorFlow.

torch: the CPU torch wheel in pip's find-links folder (skipped cleanly without it, or
without a C++ compiler for inductor). The recipe compiles ``x + rand_like(x)``: inductor
generates its own random numbers, so the compiled result differs from eager under the same
seed unless ``torch._inductor.config.fallback_random`` is on. Narrowing the inductor knobs
must name exactly that setting, applied by envbisect's start-up hook (the recipe does not
mention it). torch.compile's backend is a coarse knob: eager and aot_eager also agree, and
are reported apart, never instead of the answer.

TensorFlow: a recipe whose own metric says whether Grappler fused MatMul+BiasAdd+Relu into
one kernel (the first seed report's fused kernel): narrowing Grappler's optimizers must name
``remapping``. Both are ``slow`` (a torch.compile or a TensorFlow import costs 10-40 s per
probe on this machine); their environments live in the suite cache.
"""

from __future__ import annotations

import os
import shutil

import pytest

from support.cli import bisect_cli, write_recipe
from support.frameworks import TF_PINS, suite_cache, torch_pins

TORCH_BODY = '''
"""Compiled random numbers equal eager ones only with inductor's fallback_random."""
import shutil, sys
import torch

if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
    sys.exit(125)  # inductor's CPU backend needs a C++ compiler


def f(x):
    return x + torch.rand_like(x)


x = torch.zeros(64)
torch.manual_seed(0)
eager = f(x)
torch.manual_seed(0)
compiled = torch.compile(f)(x)
sys.exit(0 if torch.equal(eager, compiled) else 1)
'''

TF_BODY = '''
"""Does Grappler fuse MatMul+BiasAdd+Relu into one kernel? Bad when it does."""
import json, os, sys
import tensorflow as tf
from tensorflow.python.eager import context


@tf.function
def dense_relu(x, w, b):
    return tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w), b))


context.enable_run_metadata()
dense_relu(tf.ones([8, 16]), tf.ones([16, 4]), tf.ones([4]))
meta = context.export_run_metadata()
ops = sorted({n.op for fg in meta.function_graphs for g in fg.partition_graphs for n in g.node})
fused = any("Fused" in op for op in ops)
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({"fused_kernel": fused, "ops": ops}, fh)
sys.exit(1 if fused else 0)
'''


def _check_then_narrow(tmp_path, name, body, package, pins):
    recipe = write_recipe(tmp_path / name, body, package=package, deps=(package,), timeout=900)
    cache = str(suite_cache())
    check = bisect_cli("check", str(recipe), *pins, "--cache-dir", cache, "--json", cwd=tmp_path, timeout=1800,
                       check_json=True)
    return check.json, recipe, cache


@pytest.mark.slow
def test_torch_compile_divergence_is_narrowed_to_inductor_fallback_random(tmp_path):
    pins = torch_pins()
    if pins is None:
        pytest.skip("no CPU torch wheel for this Python in pip's find-links folders")
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    check, _, cache = _check_then_narrow(tmp_path, "compiled_rng.py", TORCH_BODY, "torch", pins)
    assert check["outcome"] == "bad", (check["reason"], check.get("stderr_tail"))
    proc = bisect_cli("narrow", str(check["run_id"]), "--knob", "torch.inductor", "--knob", "torch.compile",
                      "--no-compiler-bisector", *pins[2:], "--cache-dir", cache, "--json", cwd=tmp_path,
                      timeout=1800, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert [(s["knob"], s["value"]) for s in res["settings"]] == [("torch.inductor.fallback_random", True)]
    assert res["also"] == []
    assert {s["value"] for s in res["coarse"]} == {"eager", "aot_eager"}  # coarser switches, reported apart
    assert res["summary"].startswith("turning on inductor's fallback_random makes torch ")
    assert res["compiler_bisector"] is None


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ENVBISECT_LONG_TESTS"),
                    reason="torch's compiler bisector recompiles the recipe dozens of times (about 8 minutes on "
                           "2 cores): set ENVBISECT_LONG_TESTS=1 to run it")
def test_torch_compiler_bisector_reports_backend_subsystem_and_number(tmp_path):
    pins = torch_pins()
    if pins is None:
        pytest.skip("no CPU torch wheel for this Python in pip's find-links folders")
    check, _, cache = _check_then_narrow(tmp_path, "compiled_rng.py", TORCH_BODY, "torch", pins)
    if check["outcome"] != "bad":
        pytest.skip(f"the recipe is not bad here: {check['reason']}")
    proc = bisect_cli("narrow", str(check["run_id"]), "--knob", "torch.inductor.fallback_random", *pins[2:],
                      "--cache-dir", cache, "--json", cwd=tmp_path, timeout=3600, check_json=True)
    assert proc.returncode == 0, proc.stderr
    found = proc.json["compiler_bisector"]
    if not found["available"]:
        pytest.skip(found["summary"])
    # torch's bisector disables inductor's config changes one by one: fallback_random fixes it.
    assert (found["backend"], found["subsystem"]) == ("inductor", "inductor_fallback_random"), found
    assert found["bisect_number"] is not None


@pytest.mark.slow
@pytest.mark.network
def test_tensorflow_fused_kernel_is_narrowed_to_grappler_remapping(tmp_path):
    check, _, cache = _check_then_narrow(tmp_path, "fused_graph.py", TF_BODY, "tensorflow", TF_PINS)
    assert check["outcome"] == "bad" and check["metrics"]["fused_kernel"] is True, check["reason"]
    proc = bisect_cli("narrow", str(check["run_id"]), "--knob", "tf.grappler", "--cache-dir", cache, "--json",
                      cwd=tmp_path, timeout=3600, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert [(s["knob"], s["value"]) for s in res["settings"]] == [("tf.grappler.remapping", False)]
    assert [s["knob"] for s in res["coarse"]] == ["tf.grappler.all"]
    assert res["summary"].startswith("turning off Grappler's remapping makes tensorflow ")
