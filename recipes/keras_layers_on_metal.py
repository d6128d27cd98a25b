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
"""Recipe: are Keras layers (incl. preprocessing/experimental ones) usable on the GPU?

Follows the "Keras experimental layers on tensorflow-metal" write-up: a layer may be
missing from this TF/Keras, may silently fall back to the CPU, or may compute something
different on the GPU. For each layer in LAYERS this recipe records

    available   found in keras.layers, keras.layers.experimental or
                keras.layers.experimental.preprocessing (``where`` says which)
    device      where the layer's final op ran when called under tf.device('/GPU:0')
                (a CPU here means the op has no GPU kernel: a fallback)
    max_abs_diff / max_rel_diff
                GPU output vs tf.device('/CPU:0') output, the same weights and inputs

Random preprocessing layers (RandomFlip, RandomRotation) are called with
``training=False`` (inference mode, deterministic) because the two devices draw
different random streams even with the same seed.

Tolerance: ``max_rel_diff = max|gpu - cpu| / max|cpu|``. The inputs are tiny (reductions
of at most 72 terms), so float32 reordering noise is ~1e-6; the default KLM_RTOL = 1e-4
leaves a 100x margin while any real kernel bug (wrong layout, dropped bias) is O(1).
TF32 is switched off so a CUDA GPU is compared in float32 as well.

Verdict (exit status):
    0    every expected layer is available and its GPU output matches the CPU's
    1    an expected layer is missing (``since`` in LAYERS is the Keras version from which
         it is expected), raised an error, diverged on the GPU, or (only with
         KLM_FAIL_ON_FALLBACK=1) ran on the CPU under a GPU device scope
    125  cannot test here: KLM_REQUIRE_GPU is on and no GPU is visible, or TensorFlow
         failed to load (e.g. a tensorflow-metal build that does not match it)
    2    anything unexpected. Never 1: Python exits 1 on an uncaught exception.
With no GPU (and KLM_REQUIRE_GPU off) only availability and CPU execution are checked;
the metrics say ``"gpu_tested": false``.

Environment variables:
    KLM_RTOL             relative tolerance above (default 1e-4)
    KLM_REQUIRE_GPU      1: exit 125 without a GPU. Default 1 on macOS arm64 (where the
                         recipe installs tensorflow-metal, so no GPU means the plugin did
                         not load), 0 elsewhere
    KLM_FAIL_ON_FALLBACK 1: a CPU fallback counts as bad (to bisect when a layer gained a
                         GPU kernel); default 0, fallback is only reported
    KLM_COMPARE_DEVICE   device compared against the CPU (default '/GPU:0' when a GPU is
                         visible, else no comparison); '/CPU:0' exercises the comparison
                         path on any machine (CPU against itself, so it must agree)
    KLM_PLANT_MISSING    self-test knob: comma-separated layer names to treat as absent
                         (e.g. GroupNormalization); the recipe must then exit 1
    KLM_PLANT_ERROR      self-test knob: add this value to every compared output before
                         comparing (needs a GPU or KLM_COMPARE_DEVICE); e.g. 1 must exit 1
    ENVBISECT_RESULT     where to write the metrics JSON (set by envbisect)
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import traceback
from dataclasses import asdict, dataclass

GOOD, BAD, SKIP, ERROR = 0, 1, 125, 2
DEFAULT_RTOL = 1e-4
NAMESPACES = ("layers", "layers.experimental", "layers.experimental.preprocessing")

#: name -> (Keras version from which it is expected, constructor kwargs, input kind,
#: call with training=False). Inputs: "vec" (4, 16) floats, "img" (2, 8, 8, 4) floats,
#: "ids" (4, 3) ints in [0, 8).
LAYERS: dict[str, tuple[tuple[int, ...], dict, str, bool]] = {
    "Dense": ((2, 0), {"units": 8}, "vec", False),
    "Conv2D": ((2, 0), {"filters": 4, "kernel_size": 3}, "img", False),
    "LayerNormalization": ((2, 0), {}, "vec", False),
    "Normalization": ((2, 6), {"mean": 0.5, "variance": 2.0}, "vec", False),
    "Rescaling": ((2, 6), {"scale": 1.0 / 255}, "img", False),
    "Resizing": ((2, 6), {"height": 4, "width": 4}, "img", False),
    "RandomFlip": ((2, 6), {"mode": "horizontal", "seed": 1}, "img", True),
    "RandomRotation": ((2, 6), {"factor": 0.1, "seed": 1}, "img", True),
    "CategoryEncoding": ((2, 6), {"num_tokens": 8, "output_mode": "multi_hot"}, "ids", False),
    "Discretization": ((2, 6), {"bin_boundaries": [-1.0, 0.0, 1.0]}, "vec", False),
    "EinsumDense": ((2, 9), {"equation": "ab,bc->ac", "output_shape": 8}, "vec", False),
    "GroupNormalization": ((2, 11), {"groups": 2}, "img", False),
}


@dataclass
class LayerResult:
    """What one layer did here; ``max_abs_diff`` is None when no GPU comparison ran."""

    name: str
    expected: bool
    available: bool
    where: str | None = None
    device: str | None = None
    max_abs_diff: float | None = None
    scale: float | None = None
    error: str | None = None


def env_number(name: str, default: float, kind: type = float) -> float:
    """Read a numeric env var; a malformed value is a usage error, not a verdict."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}; unset it or fix it") from None


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.15.0-tf' -> (2, 15, 0), '3.0.0rc1' -> (3, 0, 0): enough to compare against LAYERS' ``since``."""
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):  # '0rc1': a pre-release suffix ends the release part
            break
    return tuple(parts)


def device_type(device: str) -> str:
    """'/GPU:0', 'GPU:0', '/job:localhost/.../device:GPU:0' -> 'GPU'."""
    return device.rsplit("device:", 1)[-1].strip("/").split(":")[0].upper()


def judge(results: list[LayerResult], compared_on: str | None, rtol: float = DEFAULT_RTOL,
          fail_on_fallback: bool = False) -> tuple[int, dict]:
    """Decide the verdict from per-layer results (plain data, no TensorFlow needed).

    ``compared_on`` is the device outputs were compared on against the CPU ('/GPU:0'),
    or None when no comparison ran; a layer whose output came from another device type
    fell back.
    """
    target = device_type(compared_on) if compared_on else None
    table, missing, errors, diverged, fallback = [], [], [], [], []
    for r in results:
        row = asdict(r)
        rel = None
        if r.max_abs_diff is not None:
            scale = r.scale or 0.0
            rel = (0.0 if r.max_abs_diff == 0 else math.inf) if scale == 0 else r.max_abs_diff / scale
        row["max_rel_diff"] = rel
        if r.expected and not r.available:
            missing.append(r.name)
        if r.error:
            errors.append(r.name)
        if rel is not None and not rel <= rtol:  # `not <=` also catches NaN
            diverged.append(r.name)
        if target and r.device and device_type(r.device) != target:
            fallback.append(r.name)
        problems = [label for label, names in (("missing", missing), ("error", errors), ("diverged", diverged))
                    if r.name in names]
        if fail_on_fallback and r.name in fallback:
            problems.append("cpu fallback")
        row["problem"] = ", ".join(problems) or None
        row["ok"] = not problems
        table.append(row)
    bad = bool(missing or errors or diverged or (fail_on_fallback and fallback))
    metrics = {
        "rtol": rtol,
        "gpu_tested": target == "GPU",
        "compared_on": compared_on,
        "layers": table,
        "missing": missing,
        "errors": errors,
        "diverged": diverged,
        "cpu_fallback": fallback,
        "fail_on_fallback": fail_on_fallback,
    }
    return (BAD if bad else GOOD), metrics


def finish(code: int, metrics: dict, summary: str) -> int:
    """Print the human summary, write the metrics file if asked, return the exit code."""
    metrics = {**metrics, "verdict": {GOOD: "good", BAD: "bad", SKIP: "skip"}.get(code, "error")}
    print(summary)
    target = os.environ.get("ENVBISECT_RESULT")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2, sort_keys=True, default=str)
    return code


def find_layer(keras, name: str):
    """Return (class, namespace) of ``name`` in this Keras, or (None, None)."""
    for space in NAMESPACES:
        obj = keras
        for attr in space.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        cls = getattr(obj, name, None) if obj is not None else None
        if cls is not None:
            return cls, f"keras.{space}"
    return None, None


def make_input(kind: str):
    """Deterministic numpy inputs (numpy, so every TF version sees the same numbers)."""
    import numpy as np

    rng = np.random.RandomState(0)
    if kind == "ids":
        return rng.randint(0, 8, size=(4, 3)).astype(np.int32)
    shape = (4, 16) if kind == "vec" else (2, 8, 8, 4)
    return rng.standard_normal(shape).astype(np.float32)


def check_layer(tf, keras, name: str, keras_version: tuple[int, ...], other: str | None, plant: float,
                planted_missing: set[str]) -> LayerResult:
    """Find, build and run one layer on the CPU and (when given) on device ``other``."""
    import numpy as np

    since, kwargs, kind, inference = LAYERS[name]
    cls, where = (None, None) if name in planted_missing else find_layer(keras, name)
    result = LayerResult(name, expected=keras_version >= since, available=cls is not None, where=where)
    if cls is None:
        return result
    data = make_input(kind)
    call_kwargs = {"training": False} if inference else {}
    try:
        layer = cls(**kwargs)
        with tf.device("/CPU:0"):
            cpu_out = layer(tf.constant(data), **call_kwargs)
        result.device = cpu_out.device.rsplit("device:", 1)[-1]
        if other:
            with tf.device(other):
                gpu_out = layer(tf.constant(data), **call_kwargs)
            result.device = gpu_out.device.rsplit("device:", 1)[-1]
            ref = np.asarray(cpu_out, dtype=np.float64)
            got = np.asarray(gpu_out, dtype=np.float64) + plant
            result.max_abs_diff = float(np.max(np.abs(got - ref)))
            result.scale = float(np.max(np.abs(ref)))
    except Exception as exc:  # a layer that raises is recorded, not fatal to the others
        result.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return result


def main() -> int:
    rtol = env_number("KLM_RTOL", DEFAULT_RTOL)
    mac_arm = sys.platform == "darwin" and platform.machine() == "arm64"
    require_gpu = bool(env_number("KLM_REQUIRE_GPU", int(mac_arm), int))
    fail_on_fallback = bool(env_number("KLM_FAIL_ON_FALLBACK", 0, int))
    plant = env_number("KLM_PLANT_ERROR", 0.0)
    planted_missing = {n.strip() for n in os.environ.get("KLM_PLANT_MISSING", "").split(",") if n.strip()}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except Exception as exc:  # e.g. NotFoundError from a mismatched Metal plugin
        if isinstance(exc, ModuleNotFoundError) and exc.name == "tensorflow":
            raise  # TensorFlow absent: the environment is broken, an error (2), not a skip.
        return finish(SKIP, {"reason": f"tensorflow failed to load: {exc}"}, f"SKIP: TensorFlow failed to load ({exc})")
    keras = tf.keras
    keras_version = version_tuple(str(getattr(keras, "__version__", "") or tf.__version__))
    gpus = tf.config.list_physical_devices("GPU")
    base = {"tf_version": tf.__version__, "keras_version": ".".join(map(str, keras_version)),
            "gpu_present": bool(gpus), "planted_error": plant, "planted_missing": sorted(planted_missing)}
    if require_gpu and not gpus:
        return finish(SKIP, {**base, "gpu_tested": False, "reason": "no GPU visible and KLM_REQUIRE_GPU=1"},
                      "SKIP: no GPU visible (is tensorflow-metal loaded?); set KLM_REQUIRE_GPU=0 to check availability only")
    tf.config.experimental.enable_tensor_float_32_execution(False)
    other = os.environ.get("KLM_COMPARE_DEVICE", "").strip() or ("/GPU:0" if gpus else None)
    results = [check_layer(tf, keras, name, keras_version, other, plant, planted_missing) for name in LAYERS]
    code, metrics = judge(results, compared_on=other, rtol=rtol, fail_on_fallback=fail_on_fallback)
    metrics.update(base)
    lines = [f"{'layer':20s} {'avail':5s} {'where':40s} {'device':8s} {'rel diff':>9s} ok"]
    for row in metrics["layers"]:
        rel = "-" if row["max_rel_diff"] is None else f"{row['max_rel_diff']:.1e}"
        lines.append(f"{row['name']:20s} {str(row['available']):5s} {str(row['where']):40s} "
                     f"{str(row['device']):8s} {rel:>9s} {'yes' if row['ok'] else 'NO: ' + row['problem']}")
    if other is None:
        lines.append("no GPU visible: checked availability and CPU execution only (gpu_tested=false)")
    for row in metrics["layers"]:
        if row["error"]:
            lines.append(f"{row['name']}: {row['error']}")
    lines.append(f"{'BAD' if code == BAD else 'GOOD'}: missing={metrics['missing']} errors={metrics['errors']} "
                 f"diverged={metrics['diverged']} cpu_fallback={metrics['cpu_fallback']}")
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
