"""Benchmark combinations: date bisection + culprit isolation, and matrix incompatibility.

1. **Date bisection vs instants.** For each N (default 8 16 32 64) it publishes three
   packages (``alpha``, ``beta``, ``gamma``) on a local index, all three on day 0 and then
   one release a day in turn for N days, except that on a seeded random *release day* two of them ship together
   and the recipe turns bad from that day on because of one of them. It runs
   ``bisect run --by date`` on an empty cache and reports the answer, the probes the
   search used on the timeline (against ceil(log2 N) + 2), the probes culprit isolation
   added, and the wall time.
2. **Matrix per incompatible combination.** ``core`` × ``plugin`` where plugin release
   *i* needs exactly core *i*: K² cells, K compatible. It runs ``bisect matrix`` and
   reports the wall time, the recipe runs, the env directories built (must be K: an
   incompatible cell is a resolve, never an install), and, in-process, the median time
   of :func:`envbisect.matrix.resolve` on incompatible cells against a cold install of a
   compatible one.

Figures, not assertions: it prints a table and exits 0.

    .venv/bin/python bench/bench_combos.py [--sizes 8 16 32 64] [--matrix-k 6] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _index import REPO, clean_environ

from envbisect.config import CachePaths
from envbisect.envs import EnvManager, EnvSpec
from envbisect.index import IndexConfig
from envbisect.installer import find_interpreter
from envbisect.plan import Lock, Planner
from support.cli import write_recipe
from support.index_server import LocalIndex
from support.wheels import build_wheel

_START = datetime(2023, 1, 1, 10, tzinfo=timezone.utc)
_PACKAGES = ("alpha", "beta", "gamma")
_RECIPE = """
import sys
from importlib.metadata import version
sys.exit(1 if tuple(int(x) for x in version({culprit!r}).split(".")) >= ({bad_minor},) else 0)
"""


def _cli(*args: str, cwd: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "envbisect", *args, "--json"], cwd=cwd, env=clean_environ(),
                          capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    try:
        return json.loads(proc.stdout), wall
    except ValueError:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}") from None


def date_case(root: Path, n: int, seed: int) -> dict:
    """Publish N release days with a planted culprit; run the date bisection cold."""
    rng = random.Random(f"{seed}-{n}")
    bad_day = rng.randint(2, n - 1)
    index = LocalIndex(root / "index").start()
    minors = dict.fromkeys(_PACKAGES, 0)
    culprit = None
    try:
        for day in range(n):
            # Day 0 ships all three (every instant then resolves); later days one each.
            shipping = list(_PACKAGES) if day == 0 else [_PACKAGES[day % 3]] + (
                [_PACKAGES[(day + 1) % 3]] if day == bad_day else [])
            for hour, pkg in enumerate(shipping):
                minors[pkg] += 1
                wheel = build_wheel(root / "wheels", pkg, f"{minors[pkg]}.0")
                index.add(wheel, upload_time=_START + timedelta(days=day, hours=hour))
            if day == bad_day:
                culprit = (shipping[-1], minors[shipping[-1]])
        recipe = write_recipe(root / "recipe.py", _RECIPE.format(culprit=culprit[0], bad_minor=culprit[1]),
                              package=culprit[0], deps=_PACKAGES)
        res, wall = _cli("run", str(recipe), "--by", "date", "--index-url", index.url,
                         "--cache-dir", str(root / "cache"), cwd=root)
    finally:
        index.stop()
    expected = (_START + timedelta(days=bad_day)).date().isoformat()
    return {"n": n, "instants": res.get("candidates"), "expected": f"{expected} {culprit[0]}",
            "found": f"{res.get('first_bad')} {','.join(c['package'] for c in res.get('culprits') or [])}",
            "ok": res.get("first_bad") == expected and [c["package"] for c in res.get("culprits") or []] == [culprit[0]],
            "timeline": len(res.get("probes") or []), "culprit": res.get("culprit_probes", 0),
            "bound": math.ceil(math.log2(res.get("candidates") or 1)) + 2, "wall": wall}


def matrix_case(root: Path, k: int) -> dict:
    """core × plugin with only the diagonal compatible; whole matrix + per-cell resolve times."""
    index = LocalIndex(root / "index").start()
    try:
        for i in range(1, k + 1):
            index.add(build_wheel(root / "wheels", "core", f"{i}.0"), upload_time=_START + timedelta(days=i))
            index.add(build_wheel(root / "wheels", "plugin", f"{i}.0", requires_dist=[f"core=={i}.0"]),
                      upload_time=_START + timedelta(days=i, hours=1))
        recipe = write_recipe(root / "recipe.py", "import sys\nsys.exit(0)\n", package="plugin", deps=("core", "plugin"))
        cache = root / "cache"
        res, wall = _cli("matrix", str(recipe), "--axis", "core", "--axis", "plugin", "--index-url", index.url,
                         "--cache-dir", str(cache), cwd=root)
        envs = len([p for p in (cache / "envs").iterdir() if not p.name.startswith(".")])
        # In-process: a resolve of each incompatible cell vs a cold install of a compatible one.
        paths = CachePaths(root / "cache2").ensure()
        interp, config = find_interpreter(None), IndexConfig(index.url)
        planner = Planner(interp.path, config, paths.uv_cache)
        resolves = []
        for i in range(1, k + 1):
            j = i % k + 1
            started = time.perf_counter()
            outcome = planner.lock([f"core=={i}.0", f"plugin=={j}.0"])
            resolves.append(time.perf_counter() - started)
            assert not isinstance(outcome, Lock), outcome
        lock = planner.lock(["core==1.0", "plugin==1.0"])
        started = time.perf_counter()
        EnvManager(paths).ensure(EnvSpec(interp, lock, config))
        install = time.perf_counter() - started
    finally:
        index.stop()
    return {"k": k, "cells": len(res["cells"]), "incompatible": res["incompatible"], "executed": res["executed"],
            "envs": envs, "wall": wall, "resolve_median": statistics.median(resolves), "install": install}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--matrix-k", type=int, default=6)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    print("date bisection + culprit isolation (cold cache)")
    print(f"  {'N':>4} {'instants':>8} {'timeline':>8} {'bound':>5} {'culprit':>7} {'wall s':>7}  answer")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-date-{n}-") as tmp:
            try:
                r = date_case(Path(tmp), n, args.seed)
            except RuntimeError as exc:
                print(f"  {n:>4} ERROR {exc}")
                continue
        mark = "PASS" if r["ok"] and r["timeline"] <= r["bound"] else "FAIL"
        print(f"  {r['n']:>4} {r['instants']:>8} {r['timeline']:>8} {r['bound']:>5} {r['culprit']:>7} "
              f"{r['wall']:>7.1f}  {r['found']} (planted {r['expected']}) {mark}")
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        m = matrix_case(Path(tmp), args.matrix_k)
    per = (m["wall"] / m["cells"])
    print(f"\nmatrix core × plugin, K = {m['k']} (only the diagonal is compatible)")
    print(f"  cells {m['cells']}, incompatible {m['incompatible']}, recipe runs {m['executed']}, "
          f"envs built {m['envs']} ({'PASS' if m['envs'] == m['k'] else 'FAIL'}: incompatible cells install nothing)")
    print(f"  whole matrix {m['wall']:.1f} s ({per:.2f} s per cell on average)")
    print(f"  resolve of an incompatible cell, median {m['resolve_median'] * 1000:.0f} ms; "
          f"cold install of a compatible cell {m['install'] * 1000:.0f} ms")
    print(f"\n(Python {sys.version.split()[0]}, {REPO.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
