# /// script
# requires-python = ">=3.9"
# dependencies = [
#     "tensorflow",
#     "tensorflow-metal; sys_platform == 'darwin' and platform_machine == 'arm64'",
#     "numpy",
# ]
# [tool.envbisect]
# package = "tensorflow-metal"
# timeout = 600
# ///
"""Recipe: does graph-mode ``relu(bias_add(matmul(x, W), b))`` agree with eager mode?

Reproduces the tensorflow-metal report in which a ``tf.function`` graph of MatMul ->
BiasAdd -> Relu (the pattern ``Dense(activation="relu")`` emits) runs through a fused
``_FusedMatMul`` kernel whose output is off by tens of units, while eager mode, the
AddV2 spelling ``relu(matmul + b)`` and the Relu-less ``bias_add(matmul)`` are correct.

Three variants are each computed eagerly and inside ``tf.function`` on the default
device (the Metal GPU when tensorflow-metal is loaded, else TF's own CPU kernels, which
grappler fuses the same way):

    fused    relu(bias_add(matmul(x, W), b))   the reported bug
    addv2    relu(matmul(x, W) + b)            control: AddV2 instead of BiasAdd
    no_relu  bias_add(matmul(x, W), b)         control: no Relu, so no 3-op fusion

Tolerance. Each variant's error is ``max|graph - eager| / max|eager|`` (relative to the
output's scale, so it does not depend on the shapes). Reordering a float32 sum of K
products changes it by about ``sqrt(K) * eps32 * |x|``; with K = 2048 that is ~1e-5 of
the output scale, and observed graph-vs-eager noise is 1e-7..1e-5. The reported bug is
30-80 units on outputs whose scale is ~200 (0.1..0.4 relative). The default threshold
1e-3 sits two orders of magnitude above the noise and two below the bug.

Verdict (exit status):
    0    every variant agrees with eager mode
    1    the fused variant diverges (metrics "diagnosis" = "fused_kernel" when both
         controls agree, the report's signature; "graph_mode_general" when a control
         diverges too, i.e. a different, broader bug) or, with a correct fused variant,
         a control diverges ("control_only"). Any divergence is a bisectable regression
         of this graph; the diagnosis tells them apart in the report.
    125  cannot test here: a GPU is required but none is visible (see FDR_REQUIRE_GPU),
         or TensorFlow failed to load (e.g. a tensorflow-metal build that does not
         match this TensorFlow).
    2    anything unexpected (a crash, a bad env var). Never 1: Python exits 1 on an
         uncaught exception, which would read as "bad".

Environment variables:
    FDR_M, FDR_K, FDR_N  shape: x is M x K, W is K x N (default 64, 2048, 1024)
    FDR_SEED             seed of the numpy generator for x, W, b (default 0); numpy,
                         not tf.random, so every TF version sees the same numbers
    FDR_RTOL             relative threshold described above (default 1e-3)
    FDR_REQUIRE_GPU      1: exit 125 when no GPU is visible; 0: run on CPU if that is
                         all there is. Default 1 on macOS arm64 (where the recipe asks
                         for tensorflow-metal, so "no GPU" means the plugin did not load
                         and a pass would be a false "good"), 0 elsewhere.
    FDR_PLANT_ERROR      self-test knob: add this value to every element of the fused
                         graph result before comparing (e.g. 30 reproduces the report's
                         magnitude); the recipe must then exit 1. Default 0.
    ENVBISECT_RESULT     where to write the metrics JSON (set by envbisect).
    ENVBISECT_OUTPUTS    where to write the outputs (set by envbisect): the graph-mode
                         result of each variant on the default device (fused.npy,
                         addv2.npy, no_relu.npy) and the fused graph on the CPU path
                         (fused_cpu.npy, TF's own kernels whatever the plugin), for
                         ``bisect run recipes/fused_dense_relu.py --diverge-from 0.8.0``:
                         the first plugin release whose device outputs differ from the
                         reference's while fused_cpu, the control, stays put. The
                         metrics also give fused_vs_cpu_max_rel_diff (device vs CPU).

Runs by hand: ``python recipes/fused_dense_relu.py`` in any env with TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import traceback

GOOD, BAD, SKIP, ERROR = 0, 1, 125, 2
DEFAULT_RTOL = 1e-3
VARIANTS = ("fused", "addv2", "no_relu")
CONTROLS = ("addv2", "no_relu")


def env_number(name: str, default: float, kind: type = float) -> float:
    """Read a numeric env var; a malformed value is a usage error, not a verdict."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}; unset it or fix it") from None


def relative_error(max_abs_diff: float, scale: float) -> float:
    """``max_abs_diff`` relative to the output scale; NaN stays NaN (so it fails the check)."""
    if math.isnan(max_abs_diff):
        return math.nan
    if scale == 0.0:
        return 0.0 if max_abs_diff == 0.0 else math.inf
    return max_abs_diff / scale


def judge(diffs: dict[str, tuple[float, float]], rtol: float = DEFAULT_RTOL) -> tuple[int, dict]:
    """Decide the verdict from per-variant ``(max_abs_diff, max|eager|)`` pairs.

    Pure (plain floats, no TensorFlow) so tests can feed it perturbed numbers. Returns
    the exit code and the metrics describing why.
    """
    metrics: dict = {"rtol": rtol}
    diverged = []
    for name in VARIANTS:
        abs_diff, scale = diffs[name]
        rel = relative_error(abs_diff, scale)
        metrics[f"{name}_max_abs_diff"] = abs_diff
        metrics[f"{name}_max_rel_diff"] = rel
        # `not rel <= rtol` also catches NaN (a graph that produced NaNs diverged).
        if not rel <= rtol:
            diverged.append(name)
    controls_bad = [c for c in CONTROLS if c in diverged]
    if not diverged:
        diagnosis = "agree"
    elif "fused" in diverged:
        diagnosis = "graph_mode_general" if controls_bad else "fused_kernel"
    else:
        diagnosis = "control_only"
    metrics["diverged"] = diverged
    metrics["diagnosis"] = diagnosis
    return (BAD if diverged else GOOD), metrics


def finish(code: int, metrics: dict, summary: str) -> int:
    """Print the human summary, write the metrics file if asked, return the exit code."""
    metrics = {**metrics, "verdict": {GOOD: "good", BAD: "bad", SKIP: "skip"}.get(code, "error")}
    print(summary)
    target = os.environ.get("ENVBISECT_RESULT")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2, sort_keys=True, default=str)
    return code


def installed_versions(*dists: str) -> dict[str, str | None]:
    """Versions of ``dists`` as seen inside this environment (None: not installed)."""
    from importlib import metadata

    found: dict[str, str | None] = {}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def gpu_required_by_default() -> bool:
    """On macOS arm64 the recipe installs tensorflow-metal: no GPU there means no plugin."""
    return sys.platform == "darwin" and platform.machine() == "arm64"


def short_device(name: str) -> str:
    """'/job:localhost/replica:0/task:0/device:GPU:0' -> 'GPU:0'."""
    return name.rsplit("device:", 1)[-1] if name else "unknown"


def compute(m: int, k: int, n: int, seed: int, plant: float):
    """Run the three variants eagerly and in graph mode; return diffs and run facts."""
    import numpy as np
    import tensorflow as tf

    # TF32 on Ampere-class CUDA GPUs would add ~1e-3 noise to both sides unequally;
    # the question is about float32 kernels, so keep float32 exact.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    rng = np.random.RandomState(seed)
    x = tf.constant(rng.standard_normal((m, k)).astype(np.float32))
    w = tf.Variable(rng.standard_normal((k, n)).astype(np.float32))
    b = tf.Variable(rng.standard_normal((n,)).astype(np.float32))

    def fused(x):
        return tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w), b))

    def addv2(x):
        return tf.nn.relu(tf.matmul(x, w) + b)

    def no_relu(x):
        return tf.nn.bias_add(tf.matmul(x, w), b)

    diffs, devices, outputs = {}, {}, {}
    for name, fn in (("fused", fused), ("addv2", addv2), ("no_relu", no_relu)):
        eager = fn(x)
        graph = tf.function(fn)(x)
        devices[name] = short_device(graph.device)
        got = graph.numpy().astype(np.float64)
        if name == "fused" and plant:
            got = got + plant
        ref = eager.numpy().astype(np.float64)
        diffs[name] = (float(np.max(np.abs(got - ref))), float(np.max(np.abs(ref))))
        outputs[name] = got
    with tf.device("/CPU:0"):  # the CPU path: TF's own fused kernel, never the plugin's
        outputs["fused_cpu"] = tf.function(fused)(x).numpy().astype(np.float64)
    save_outputs(outputs)
    cpu_scale = float(np.max(np.abs(outputs["fused_cpu"])))
    diffs["vs_cpu"] = (float(np.max(np.abs(outputs["fused"] - outputs["fused_cpu"]))), cpu_scale)
    return diffs, devices


def save_outputs(arrays: dict) -> None:
    """Save each array as NAME.npy into $ENVBISECT_OUTPUTS, when set: envbisect compares
    them with a reference release's (``--diverge-from``)."""
    import numpy as np

    folder = os.environ.get("ENVBISECT_OUTPUTS")
    for name, array in arrays.items() if folder else ():
        np.save(os.path.join(folder, f"{name}.npy"), array)


def main() -> int:
    m, k, n = (int(env_number(v, d, int)) for v, d in (("FDR_M", 64), ("FDR_K", 2048), ("FDR_N", 1024)))
    seed = int(env_number("FDR_SEED", 0, int))
    rtol = env_number("FDR_RTOL", DEFAULT_RTOL)
    plant = env_number("FDR_PLANT_ERROR", 0.0)
    require_gpu = bool(env_number("FDR_REQUIRE_GPU", int(gpu_required_by_default()), int))
    base = {
        "shape": [m, k, n],
        "seed": seed,
        "planted_error": plant,
        "versions": installed_versions("tensorflow", "tensorflow-cpu", "tensorflow-macos", "keras", "tensorflow-metal"),
    }
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except Exception as exc:  # e.g. NotFoundError from a mismatched Metal plugin
        if isinstance(exc, ModuleNotFoundError) and exc.name == "tensorflow":
            raise  # TensorFlow absent: the environment is broken, an error (2), not a skip.
        return finish(SKIP, {**base, "reason": f"tensorflow failed to load: {exc}"},
                      f"SKIP: TensorFlow failed to load here ({type(exc).__name__}: {exc})")
    gpus = tf.config.list_physical_devices("GPU")
    base.update(gpu_present=bool(gpus), tf_version=tf.__version__)
    if require_gpu and not gpus:
        return finish(SKIP, {**base, "reason": "no GPU visible and FDR_REQUIRE_GPU=1"},
                      "SKIP: no GPU visible (is tensorflow-metal loaded?); set FDR_REQUIRE_GPU=0 to test CPU kernels")

    diffs, devices = compute(m, k, n, seed, plant)
    vs_cpu = diffs.pop("vs_cpu")
    code, metrics = judge(diffs, rtol)
    metrics["fused_vs_cpu_max_rel_diff"] = relative_error(*vs_cpu)
    metrics.update(base, device=devices["fused"], devices=devices)
    if not gpus:
        metrics["note"] = "no GPU: checked TensorFlow's own CPU fused kernels, not Metal"
    lines = [f"{name:8s} max_abs_diff={metrics[name + '_max_abs_diff']:.3e} "
             f"max_rel_diff={metrics[name + '_max_rel_diff']:.3e} on {devices[name]}" for name in VARIANTS]
    verdict = "BAD" if code == BAD else "GOOD"
    lines.append(f"{verdict}: diagnosis={metrics['diagnosis']} (threshold {rtol:g} relative to max|eager|)")
    if "note" in metrics:
        lines.append(metrics["note"])
    return finish(code, metrics, "\n".join(lines))


def run() -> int:
    """Entry point: turn any unexpected exception into exit 2 (error), never 1 (bad)."""
    try:
        return main()
    except Exception:
        traceback.print_exc()
        return ERROR


if __name__ == "__main__":
    sys.exit(run())
