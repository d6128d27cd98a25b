"""The shipped recipes, run for real through ``bisect check``.

These install real frameworks, so their environments live in a cache directory that
the suite reuses across runs (``ENVBISECT_TEST_CACHE``, else the per-user cache dir from
platformdirs): the first run downloads TensorFlow (~600 MB) once, later runs reuse the
environment and only run the recipe (``--no-reuse``: the recipe really runs each time).
"""

from __future__ import annotations

import pytest

from support.cli import cli_env
from support.frameworks import TF_PINS, TF_VERSION, check, torch_pins


@pytest.mark.network
@pytest.mark.slow
def test_fused_dense_relu_is_good_on_tensorflow_cpu():
    proc = check("fused_dense_relu.py", TF_PINS, "--no-reuse")
    res = proc.json
    assert proc.returncode == 0, (res["reason"], res.get("stderr_tail"))
    assert res["outcome"] == "good" and res["resolved"]["tensorflow"] == TF_VERSION
    m = res["metrics"]
    assert m["diagnosis"] == "agree" and m["gpu_present"] is False
    assert m["device"].startswith("CPU")
    for variant in ("fused", "addv2", "no_relu"):
        assert 0.0 <= m[f"{variant}_max_rel_diff"] < 1e-4  # float32 reordering noise at most
    assert m["tf_version"] == TF_VERSION and m["shape"] == [64, 2048, 1024]

    # The same environment with the recipe's self-test knob: a planted error of the
    # report's magnitude in the fused graph result must turn the verdict bad.
    planted = check("fused_dense_relu.py", TF_PINS, "--no-reuse", env=cli_env(FDR_PLANT_ERROR="30"))
    assert planted.returncode == 1, planted.json["reason"]
    assert planted.json["metrics"]["diagnosis"] == "fused_kernel"


@pytest.mark.slow
def test_inductor_addmm_runs_on_cpu_with_the_local_torch_wheel():
    pins = torch_pins()
    if pins is None:
        pytest.skip("no CPU torch wheel for this Python in pip's find-links folders")
    version = pins[1].split("==")[1]
    proc = check("inductor_addmm.py", pins, "--no-reuse")
    res = proc.json
    assert res["outcome"] in ("good", "skip"), (res["reason"], res.get("stderr_tail"))
    if res["outcome"] == "skip":
        pytest.skip(f"inductor cannot compile here: {res['metrics']}")
    m = res["metrics"]
    assert res["resolved"]["torch"] == version
    assert m["device"] == "cpu" and m["eager_determinism"] == 0.0
    assert m["rel_error"] < m["rtol"]
