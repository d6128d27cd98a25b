"""torch's own compiler bisector, run on a recipe in its first bad environment.

``torch._inductor.compiler_bisector`` (torch >= 2.6; the ``run`` command since 2.9)
re-runs a failing torch.compile program with one backend after another (eager,
aot_eager, aot_eager_decomp_partition, inductor), then disables the subsystems of the
first backend that fails (graph passes, config changes such as ``fallback_random``,
lowerings) and bisects the number of times the guilty one was applied. Its answer is a
backend, a subsystem and a decision number.

envbisect runs it as a probe of its own: :func:`wrapper_text` turns the recipe into a
*wrapper recipe* (the same PEP 723 block, so the same locked environment) that runs
``python -m torch._inductor.compiler_bisector run python RECIPE`` in the probe's scratch
directory (its state files too, through ``TORCHINDUCTOR_CACHE_DIR``) and writes the answer
as metrics. The wrapper's text holds the recipe's, so its hash, and with it the probe key,
changes with the recipe. When this torch has no bisector (or no ``run`` command) the
wrapper exits 125 with the reason: best effort, said plainly.
"""

from __future__ import annotations

import re

from envbisect.recipes import Recipe

#: The compiler bisector re-runs the recipe many times: its probe gets this many timeouts.
TIMEOUT_FACTOR = 30

_BODY = r'''
import json, os, re, subprocess, sys

RECIPE = __RECIPE__


def finish(code, metrics):
    target = os.environ.get("ENVBISECT_RESULT")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(metrics, fh)
    sys.exit(code)


def main():
    try:
        import torch._inductor.compiler_bisector as cb
    except Exception as exc:
        finish(125, {"available": False, "reason": "this torch has no compiler bisector (%s)" % type(exc).__name__})
    if "run <cmd>" not in getattr(cb, "HELP_TEXT", ""):
        finish(125, {"available": False, "reason": "this torch's compiler bisector has no `run` command"})
    path = os.path.abspath("recipe_under_test.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(RECIPE)
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.abspath("inductor-cache"))
    env.pop("ENVBISECT_RESULT", None)  # the inner runs must not write the answer's file
    proc = subprocess.run([sys.executable, "-m", "torch._inductor.compiler_bisector", "run", sys.executable, path],
                          env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-6000:])
    sys.stderr.write(proc.stderr[-6000:])
    found = re.search(r"Bisection complete: BisectionResult\(backend='([^']*)', subsystem=(?:'([^']*)'|None), "
                      r"bisect_number=(-?\d+|None)", proc.stdout)
    if found:
        number = found.group(3)
        finish(0, {"available": True, "backend": found.group(1), "subsystem": found.group(2),
                   "bisect_number": None if number == "None" else int(number)})
    if "no issue found" in proc.stdout:
        finish(0, {"available": True, "backend": None, "subsystem": None, "bisect_number": None,
                   "note": "the compiler bisector saw no failure under any backend"})
    finish(2, {"available": True, "reason": "the compiler bisector ended without an answer (exit %d)" % proc.returncode})


main()
'''

_BLOCK = re.compile(r"(?ms)^# /// script$.*?^# ///$")


def applies(recipe: Recipe, installed: dict[str, str]) -> bool:
    """A torch.compile recipe in an environment with torch."""
    return "torch" in installed and "torch.compile" in recipe.text


def wrapper_text(recipe: Recipe) -> str:
    """The wrapper recipe: the recipe's PEP 723 block, then the bisector driver."""
    block = _BLOCK.search(recipe.text)
    header = block.group(0) if block else "# /// script\n# ///"
    return header + "\n" + _BODY.replace("__RECIPE__", repr(recipe.text))


def answer(metrics: dict | None, reason: str) -> dict:
    """What a report says of the bisector's probe: its answer, or why there is none."""
    m = dict(metrics or {})
    if m.get("backend"):
        where = f"{m['backend']}" + (f", subsystem {m['subsystem']}" if m.get("subsystem") else "")
        number = m.get("bisect_number")
        summary = f"torch's compiler bisector: {where}" + (f", decision {number}" if number is not None else "")
    elif m.get("available") and m.get("note"):
        summary = f"torch's compiler bisector: {m['note']}"
    else:
        summary = f"torch's compiler bisector: unavailable ({m.get('reason') or reason})"
    return {"backend": m.get("backend"), "subsystem": m.get("subsystem"), "bisect_number": m.get("bisect_number"),
            "available": bool(m.get("available")), "summary": summary}
