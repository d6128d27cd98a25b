"""The shipped recipes, run for real through ``bisect check``.

These install real frameworks, so their environments live in a cache directory that
the suite reuses across runs (``ENVBISECT_TEST_CACHE``, else the per-user cache dir from
platformdirs): the first run downloads TensorFlow (~600 MB) once, later runs reuse the
environment and only run the recipe (``--no-reuse``: the recipe really runs each time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from support.cli import bisect_cli, cli_env

REPO = Path(__file__).resolve().parents[2]
TF_VERSION = "2.21.0"  # one recent TensorFlow release with cp311 Linux wheels


def suite_cache() -> Path:
    path = Path(os.environ.get("ENVBISECT_TEST_CACHE") or platformdirs.user_cache_dir("envbisect")) / "test-suite"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_torch_wheel_dir() -> Path | None:
    """A find-links folder (from pip's configuration) holding a CPU torch wheel for this Python."""
    dirs = [d for d in os.environ.get("PIP_FIND_LINKS", "").split()]
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if "find-links" in line and "=" in line:
            dirs += line.split("=", 1)[1].strip().strip("'\"").split()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for d in dirs:
        path = Path(d.removeprefix("file://"))
        if path.is_dir() and any(path.glob(f"torch-*+cpu-{tag}-*linux*.whl")):
            return path
    return None


@pytest.mark.network
@pytest.mark.slow
def test_fused_dense_relu_is_good_on_tensorflow_cpu():
    proc = bisect_cli("check", str(REPO / "recipes" / "fused_dense_relu.py"), "--with", f"tensorflow=={TF_VERSION}",
                      "--no-reuse", "--cache-dir", str(suite_cache()), "--json", cwd=REPO, timeout=1500,
                      check_json=True)
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
    planted = bisect_cli("check", str(REPO / "recipes" / "fused_dense_relu.py"), "--with", f"tensorflow=={TF_VERSION}",
                         "--no-reuse", "--cache-dir", str(suite_cache()), "--json", cwd=REPO, timeout=1500,
                         env=cli_env(FDR_PLANT_ERROR="30"), check_json=True)
    assert planted.returncode == 1, planted.json["reason"]
    assert planted.json["metrics"]["diagnosis"] == "fused_kernel"


@pytest.mark.slow
def test_inductor_addmm_runs_on_cpu_with_the_local_torch_wheel():
    wheels = local_torch_wheel_dir()
    if wheels is None:
        pytest.skip("no CPU torch wheel for this Python in pip's find-links folders")
    wheel = sorted(wheels.glob("torch-*+cpu-*.whl"))[-1]
    version = wheel.name.split("-")[1]
    proc = bisect_cli("check", str(REPO / "recipes" / "inductor_addmm.py"), "--with", f"torch=={version}",
                      "--find-links", str(wheels), "--no-reuse", "--cache-dir", str(suite_cache()), "--json",
                      cwd=REPO, timeout=1500, check_json=True)
    res = proc.json
    assert res["outcome"] in ("good", "skip"), (res["reason"], res.get("stderr_tail"))
    if res["outcome"] == "skip":
        pytest.skip(f"inductor cannot compile here: {res['metrics']}")
    m = res["metrics"]
    assert res["resolved"]["torch"] == version
    assert m["device"] == "cpu" and m["eager_determinism"] == 0.0
    assert m["rel_error"] < m["rtol"]
