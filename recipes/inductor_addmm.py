# /// script
# requires-python = ">=3.9"
# dependencies = ["torch"]
# [tool.envbisect]
# package = "torch"
# timeout = 900
# ///
"""Recipe: does ``torch.compile(backend="inductor")`` agree with eager on an addmm model?

Reproduces the PyTorch report in which a CNN+MLP written with explicit ``mm + bias`` and
``bias + mm`` patterns (which Inductor rewrites into fused ``addmm`` calls) gives a
compiled output that differs from eager mode: max_diff 1.57 on outputs in
[-4031, 1971], a relative error of 3.9e-4, while eager is bit-for-bit deterministic.

The model runs eagerly twice (to measure eager's own run-to-run noise) and once compiled,
on CUDA when available, else on the CPU (where Inductor generates C++).

Tolerance. The error is ``rel_error = max|compiled - eager| / max|eager|``. Inductor may
legitimately reassociate float32 sums (addmm epilogues, split-K, a different GEMM
algorithm): reordering a sum of K products moves it by about ``sqrt(K) * eps32`` of the
scale of its terms, i.e. ~1e-5 per layer for fc1's K = 128*7*7 = 6272, and the three
chained mm+bias+relu layers (with randn weights that amplify and cancel) plausibly
compound that to the reported 4e-4. A wrong kernel (bias dropped or doubled, a wrong
transpose, a missing relu) is off by O(1) relative. The default ADDMM_RTOL = 1e-2 sits
25x above the reported figure and ~100x below a real bug, so it bisects *bugs*; to
bisect the report's exact 4e-4 drift, set ADDMM_RTOL=1e-5 (strict: any reassociation
then counts as bad).

Measured (seed 0, batch 4): torch 2.11 on an H100 with TF32 off, rel_error 3.8e-7; with
torch's default TF32 for cuDNN convolutions (ADDMM_TF32=1), rel_error 4.0e-4, the
report's figure, so the reported gap is TF32 precision, not a wrong addmm. On a CPU
(torch 2.13, 2 cores) rel_error 5.6e-7, about a minute, nearly all of it compiling.

Verdict (exit status):
    0    rel_error <= ADDMM_RTOL
    1    rel_error > ADDMM_RTOL (or the compiled output holds NaN/inf where eager does not)
    125  cannot test here: eager itself is not reproducible to within ADDMM_RTOL / 2
         (a verdict at that tolerance would be a coin toss), CUDA was asked for but is
         absent, or the toolchain Inductor needs is missing: no C++ compiler for CPU
         code (neither CXX set nor g++/c++/clang++ on PATH), no Triton for CUDA, or
         torch.compile unsupported on this Python/torch.
    2    anything else, including a crash inside torch.compile that is not a missing
         toolchain (envbisect's --regress policy decides whether that counts as bad).
         Never 1: Python exits 1 on an uncaught exception, which would read as "bad".

Environment variables:
    ADDMM_DEVICE         "cuda" or "cpu" (default: cuda when available, else cpu)
    ADDMM_BATCH          batch size (default 4); the image is 3x56x56 as in the report
    ADDMM_SEED           torch.manual_seed for weights and input (default 0)
    ADDMM_RTOL           relative tolerance described above (default 1e-2)
    ADDMM_TF32           1: leave torch's TF32 defaults alone (cuDNN convolutions then
                         use TF32 on Ampere+ GPUs); default 0 switches TF32 off for
                         cuDNN and matmul so both sides are float32 throughout
    ADDMM_PLANT_ERROR    self-test knob: add this value to one element of the compiled
                         output before comparing (outputs are in the thousands, so
                         e.g. 1000 must exit 1). Default 0.
    ENVBISECT_RESULT     where to write the metrics JSON (set by envbisect).
    ENVBISECT_OUTPUTS    where to write the outputs (set by envbisect): eager.json and
                         compiled.json (the model's outputs, float64 nested lists) and
                         divergence.json (compiled - eager), for
                         ``bisect run recipes/inductor_addmm.py --diverge-from 2.4.0``:
                         the first torch release whose outputs differ from 2.4.0's
                         beyond --rtol/--atol, and which of the three moved (eager
                         itself, or only the compiled path).

Runs by hand: ``python recipes/inductor_addmm.py`` in any env with torch >= 2.0.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import traceback

GOOD, BAD, SKIP, ERROR = 0, 1, 125, 2
DEFAULT_RTOL = 1e-2

#: Substrings of torch.compile failures that mean "this machine lacks the toolchain",
#: not "Inductor is broken": they make the probe untestable (125) rather than an error.
TOOLCHAIN_MARKERS = (
    "invalidcxxcompiler",
    "no working c++ compiler",
    "cannot find a working triton",
    "no module named 'triton'",
    "not yet supported for torch.compile",
    "is not supported on python",
)


def env_number(name: str, default: float, kind: type = float) -> float:
    """Read a numeric env var; a malformed value is a usage error, not a verdict."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}; unset it or fix it") from None


def judge(eager_determinism: float, max_abs_diff: float, scale: float, rtol: float = DEFAULT_RTOL) -> tuple[int, dict]:
    """Decide the verdict from plain floats: eager run-to-run diff, compiled-vs-eager
    diff, and ``max|eager|``. Pure, so tests can feed it perturbed numbers without torch."""
    safe = scale if scale > 0 else 1.0
    rel_error = max_abs_diff / safe if not math.isnan(max_abs_diff) else math.nan
    eager_rel = eager_determinism / safe if not math.isnan(eager_determinism) else math.nan
    metrics = {
        "eager_determinism": eager_determinism,
        "eager_rel_nondeterminism": eager_rel,
        "max_abs_diff": max_abs_diff,
        "output_scale": scale,
        "rel_error": rel_error,
        "rtol": rtol,
    }
    # `not x <= y` is True for NaN too: NaN means the comparison itself failed.
    if not eager_rel <= rtol / 2:
        metrics["reason"] = "eager mode is not reproducible to within rtol/2; cannot judge"
        return SKIP, metrics
    return (BAD if not rel_error <= rtol else GOOD), metrics


def finish(code: int, metrics: dict, summary: str) -> int:
    """Print the human summary, write the metrics file if asked, return the exit code."""
    metrics = {**metrics, "verdict": {GOOD: "good", BAD: "bad", SKIP: "skip"}.get(code, "error")}
    print(summary)
    target = os.environ.get("ENVBISECT_RESULT")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2, sort_keys=True, default=str)
    return code


def save_outputs(**tensors) -> None:
    """Write each tensor as NAME.json (a float64 nested list) into $ENVBISECT_OUTPUTS, when
    set: envbisect compares them with a reference release's (``--diverge-from``)."""
    folder = os.environ.get("ENVBISECT_OUTPUTS")
    for name, tensor in tensors.items() if folder else ():
        with open(os.path.join(folder, f"{name}.json"), "w", encoding="utf-8") as fh:
            json.dump(tensor.detach().double().cpu().tolist(), fh)


def is_toolchain_failure(exc: BaseException) -> bool:
    """Whether a torch.compile failure says the machine lacks a compiler or Triton."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in TOOLCHAIN_MARKERS)


def build_model():
    """The report's AddmmModel, verbatim apart from formatting."""
    import torch
    import torch.nn as nn

    def gelu_erf(x):
        return 0.5 * x * (1 + torch.erf(x * 0.7071067811865476))

    class AddmmModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=1)
            self.conv3 = nn.Conv2d(64, 128, kernel_size=1)
            self.pool = nn.MaxPool2d(2, 2)
            self.flatten = nn.Flatten()
            self.fc1_weight = nn.Parameter(torch.randn(128 * 7 * 7, 512))
            self.fc1_bias = nn.Parameter(torch.randn(512))
            self.fc2_weight = nn.Parameter(torch.randn(512, 256))
            self.fc2_bias = nn.Parameter(torch.randn(256))
            self.out_weight = nn.Parameter(torch.randn(256, 10))
            self.out_bias = nn.Parameter(torch.randn(10))

        def forward(self, x):
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(gelu_erf(self.conv2(x)))
            x = self.pool(gelu_erf(self.conv3(x)))
            x = self.flatten(x)
            x = torch.relu(torch.mm(x, self.fc1_weight) + self.fc1_bias)  # mm + bias
            x = torch.relu(self.fc2_bias + torch.mm(x, self.fc2_weight))  # bias + mm
            return torch.mm(x, self.out_weight) + self.out_bias

    return AddmmModel()


def main() -> int:
    import torch

    batch = int(env_number("ADDMM_BATCH", 4, int))
    seed = int(env_number("ADDMM_SEED", 0, int))
    rtol = env_number("ADDMM_RTOL", DEFAULT_RTOL)
    plant = env_number("ADDMM_PLANT_ERROR", 0.0)
    asked = os.environ.get("ADDMM_DEVICE", "").strip().lower()
    device = asked or ("cuda" if torch.cuda.is_available() else "cpu")
    base = {"torch_version": torch.__version__, "device": device, "batch": batch, "seed": seed,
            "planted_error": plant, "tf32": bool(env_number("ADDMM_TF32", 0, int))}
    if device not in ("cpu", "cuda"):
        raise ValueError(f"ADDMM_DEVICE={asked!r} is not 'cpu' or 'cuda'; fix or unset it")
    if device == "cuda" and not torch.cuda.is_available():
        return finish(SKIP, {**base, "reason": "CUDA asked for but not available"}, "SKIP: ADDMM_DEVICE=cuda but no CUDA device")
    if not hasattr(torch, "compile"):
        return finish(SKIP, {**base, "reason": "torch.compile absent (torch < 2.0)"}, "SKIP: this torch has no torch.compile")
    if device == "cpu" and not (os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))):
        return finish(SKIP, {**base, "reason": "no C++ compiler for Inductor's CPU backend"},
                      "SKIP: Inductor on CPU needs a C++ compiler (g++/clang++); install one or use CUDA")
    if device == "cuda":
        base["gpu_name"] = torch.cuda.get_device_name(0)
        if not base["tf32"]:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    torch.manual_seed(seed)
    model = build_model().to(device).eval()
    x = torch.randn(batch, 3, 56, 56, device=device)
    with torch.no_grad():
        ref1, ref2 = model(x), model(x)
        torch._dynamo.reset()
        try:
            out = torch.compile(model, backend="inductor")(x)
        except Exception as exc:
            if is_toolchain_failure(exc):
                return finish(SKIP, {**base, "reason": f"torch.compile cannot run here: {type(exc).__name__}"},
                              f"SKIP: torch.compile cannot run here ({type(exc).__name__}: {str(exc)[:300]})")
            raise
    ref = ref1.double()
    got = out.double()
    if plant:
        got[0, 0] += plant
    save_outputs(eager=ref, compiled=got, divergence=got - ref)
    code, metrics = judge(
        eager_determinism=(ref1.double() - ref2.double()).abs().max().item(),
        max_abs_diff=(ref - got).abs().max().item(),
        scale=ref.abs().max().item(),
        rtol=rtol,
    )
    metrics.update(base, output_range=[ref.min().item(), ref.max().item()])
    verdict = {GOOD: "GOOD", BAD: "BAD", SKIP: "SKIP"}[code]
    summary = (
        f"eager determinism {metrics['eager_determinism']:.3e}; compiled vs eager max_abs_diff "
        f"{metrics['max_abs_diff']:.3e}, rel_error {metrics['rel_error']:.3e} on {device} "
        f"(output range [{metrics['output_range'][0]:.2f}, {metrics['output_range'][1]:.2f}])\n"
        f"{verdict}: threshold ADDMM_RTOL={rtol:g}" + (f" ({metrics['reason']})" if "reason" in metrics else "")
    )
    return finish(code, metrics, summary)


def run() -> int:
    """Entry point: turn any unexpected exception into exit 2 (error), never 1 (bad)."""
    try:
        return main()
    except Exception:
        traceback.print_exc()
        return ERROR


if __name__ == "__main__":
    sys.exit(run())
