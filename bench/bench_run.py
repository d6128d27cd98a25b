"""Benchmark ``bisect run`` against a planted regression on a local index, and against
doing the same probes by hand with venv + pip.

For each size N (default 64 and 256) it serves N releases of ``benchpkg`` on 127.0.0.1
(first bad release at a seeded random position) and measures:

* a cold ``bisect run`` (empty cache): wall time, the answer, and the probes used
  against the bound ceil(log2 N) + 2 (two endpoint checks plus a binary search);
* a warm ``bisect run --no-reuse`` on the same cache (every env cached, every probe
  re-run): wall time. Both are repeated R times (``--repeat``, each cold run on a fresh
  cache) and the median is reported, because the machine is small and shared;
* the resolve of each probed candidate into its lock (``Session.lock``: ``uv pip compile
  --refresh`` against the index), median, and its share of a cold probe (cold run / probes);
* warm env materialisation through the library (``EnvManager.ensure`` of a spec that
  already exists, built exactly as the session builds it), median over the probed
  versions; each must be a cache hit;
* the naive loop a user would type for the same probe sequence: ``python -m venv`` +
  ``pip install --no-cache-dir`` + run the recipe, optionally on a sample of K probes
  and extrapolated.

It prints one table with the targets marked PASS/FAIL and always exits 0: it is a
report, not a test (the test suite never asserts on wall time).

    .venv/bin/python bench/bench_run.py [--sizes 64 256] [--naive-sample K] [--repeat R] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _index import PACKAGE, REPO, Fixture, build_fixture, clean_environ

from envbisect.config import CachePaths, Settings
from envbisect.envs import EnvManager, host_platform
from envbisect.installer import find_interpreter
from envbisect.index import IndexConfig
from envbisect.recipes import load_recipe
from envbisect.requests_model import requirements_for
from envbisect.session import Session
from envbisect.store import Store

MATERIALISE_TARGET_S = 0.3
SPEEDUP_TARGET = 10.0


class RunFailed(Exception):
    """A ``bisect run`` that did not print its JSON result: reported, not raised further."""


@dataclass
class SizeResult:
    """Every figure measured for one N."""

    n: int
    planted: str
    found: str | None = None
    answer_ok: bool = False
    probes: list[str] = field(default_factory=list)
    cold_runs: list[float] = field(default_factory=list)
    warm_runs: list[float] = field(default_factory=list)
    warm_executed: list[int] = field(default_factory=list)  # probes each warm run re-ran
    materialise_s: list[float] = field(default_factory=list)
    resolve_s: list[float] = field(default_factory=list)
    hits: int = 0
    naive_measured_s: float | None = None
    naive_measured: int = 0
    naive_wrong: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def bound(self) -> int:
        return math.ceil(math.log2(self.n)) + 2

    @property
    def cold_s(self) -> float | None:
        return statistics.median(self.cold_runs) if self.cold_runs else None

    @property
    def warm_s(self) -> float | None:
        return statistics.median(self.warm_runs) if self.warm_runs else None

    @property
    def naive_s(self) -> float | None:
        """The naive loop's time for the whole probe sequence (extrapolated if sampled)."""
        if self.naive_measured_s is None or not self.naive_measured:
            return None
        return self.naive_measured_s / self.naive_measured * len(self.probes)

    @property
    def speedup(self) -> float | None:
        return self.naive_s / self.cold_s if self.naive_s and self.cold_s else None


def bisect_run(fx: Fixture, cache: Path, *extra: str) -> tuple[dict, float]:
    """Run the real CLI once; its parsed JSON and the wall time around the subprocess."""
    cmd = [sys.executable, "-m", "envbisect", "run", str(fx.recipe), "--index-url", fx.index.url,
           "--cache-dir", str(cache), "--json", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_environ(), cwd=fx.recipe.parent,
                          stdin=subprocess.DEVNULL, timeout=600)
    elapsed = time.perf_counter() - start
    try:
        return json.loads(proc.stdout), elapsed
    except ValueError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RunFailed(f"{' '.join(['bisect run', *extra])} exited {proc.returncode}: {' | '.join(tail)}") from None


def materialise(fx: Fixture, cache: Path, versions: list[str]) -> tuple[list[float], list[float], int]:
    """Time the two steps of a probe's environment for the envs the cold run built:
    the resolve into a lock (``Session.lock``: ``uv pip compile --refresh`` against the
    index) and ``EnvManager.ensure`` of the spec keyed on that lock. Returns (resolve
    seconds each, ensure seconds each, cache hits).

    The spec comes from the session's own code, as ``bisect run`` makes it: the recipe's
    dependencies with the candidate pinned (``requirements_for``), resolved and keyed by
    ``Session.lock`` / ``Session.env_spec`` with the settings the CLI builds from the same
    environment the subprocess ran in. Any difference would change the key and show up
    here as a miss (a fresh build), never as a flattering figure."""
    recipe = load_recipe(fx.recipe)
    paths = CachePaths(cache)
    settings = Settings(cache=paths, index=IndexConfig.resolve(clean_environ(), index_url=fx.index.url))
    with Store(None) as store:  # locks are kept in a throwaway store
        session = Session(settings, store)
        resolves, times, hits = [], [], 0
        for version in versions:
            reqs = requirements_for(recipe, [], PACKAGE, version)
            start = time.perf_counter()
            lock = session.lock(reqs)
            resolves.append(time.perf_counter() - start)
            start = time.perf_counter()
            env = EnvManager(paths).ensure(session.env_spec(lock))
            times.append(time.perf_counter() - start)
            hits += env.reused
    return resolves, times, hits


def naive_loop(fx: Fixture, work: Path, versions: list[str]) -> tuple[float, list[str]]:
    """What a user does by hand per version: a fresh venv, pip install, run the recipe.

    Returns the total wall time and the versions whose exit status disagreed with the
    planted truth (which would mean the comparison is not like for like)."""
    env = clean_environ(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1")
    python = find_interpreter(None).path
    bad_from = fx.versions.index(fx.first_bad)
    wrong = []
    start = time.perf_counter()
    for i, version in enumerate(versions):
        venv = work / f"naive-{i}"
        subprocess.run([python, "-m", "venv", str(venv)], env=env, check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir",
                        "--disable-pip-version-check", "--index-url", fx.index.url, f"{PACKAGE}=={version}"],
                       env=env, check=True, stdin=subprocess.DEVNULL)
        code = subprocess.run([str(venv / "bin" / "python"), str(fx.recipe)], env=env).returncode
        if code != (0 if fx.versions.index(version) < bad_from else 1):
            wrong.append(version)
    return time.perf_counter() - start, wrong


def bisect_pair(fx: Fixture, cache: Path, res: SizeResult) -> None:
    """One cold run on an empty ``cache`` then one warm ``--no-reuse`` run on it, recorded
    into ``res``; every repeat must give the same answer and the same probe sequence."""
    cold, elapsed = bisect_run(fx, cache)
    res.cold_runs.append(elapsed)
    probes = [p["version"] for p in cold["probes"]]
    found = f"{cold.get('last_good')} -> {cold.get('first_bad')}"
    ok = (cold.get("status") == "found" and cold.get("first_bad") == fx.first_bad
          and cold.get("last_good") == fx.last_good)
    if res.found is None:
        res.probes, res.found, res.answer_ok = probes, found, ok
    elif (probes, found) != (res.probes, res.found):
        res.answer_ok = False  # the search is deterministic: a different path is a bug
        res.found += f" (a repeat gave {found} via {probes})"
    warm, elapsed = bisect_run(fx, cache, "--no-reuse")
    res.warm_runs.append(elapsed)
    res.warm_executed.append(warm.get("executed", 0))


def measure(n: int, seed: int, naive_sample: int | None, repeat: int) -> SizeResult:
    with tempfile.TemporaryDirectory(prefix=f"envbisect-bench-{n}-") as tmp:
        root = Path(tmp)
        fx = build_fixture(root, n, seed)
        res = SizeResult(n, fx.first_bad)
        try:
            for i in range(repeat):
                bisect_pair(fx, root / f"cache-{i}", res)
            res.resolve_s, res.materialise_s, res.hits = materialise(fx, root / "cache-0", res.probes)
            sample = res.probes[:naive_sample] if naive_sample else res.probes
            res.naive_measured_s, res.naive_wrong = naive_loop(fx, root, sample)
            res.naive_measured = len(sample)
        except (RunFailed, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            res.error = str(exc)
        finally:
            fx.index.stop()
        return res


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _runs(values: list, spec: str = ".2f") -> str:
    return " ".join(format(v, spec) for v in values) or "-"


def rows_for(r: SizeResult) -> list[tuple[str, str, str]]:
    """(figure, value, PASS/FAIL or '') rows of the table for one N."""
    med = statistics.median(r.materialise_s) if r.materialise_s else None
    resolve = statistics.median(r.resolve_s) if r.resolve_s else None
    naive_note = ("" if r.naive_measured == len(r.probes)
                  else f" (extrapolated from {r.naive_measured}/{len(r.probes)} probes)")
    return [
        ("planted first bad", r.planted, ""),
        ("found (last good -> first bad)", r.found or "-", _verdict(r.answer_ok if r.found else None)),
        ("probes used / bound", f"{len(r.probes)} / {r.bound}", _verdict(len(r.probes) <= r.bound if r.probes else None)),
        ("cold bisect run, median (s)", _fmt(r.cold_s, ".2f") + f"  (of {_runs(r.cold_runs)})", ""),
        ("warm bisect run --no-reuse, median (s)", _fmt(r.warm_s, ".2f") + f"  (of {_runs(r.warm_runs)};"
         f" probes re-run: {_runs(r.warm_executed, 'd')})", ""),
        ("resolve into a lock per candidate, median (ms)", _fmt(resolve and resolve * 1000, ".0f")
         + (f"  ({resolve / (r.cold_s / len(r.probes)):.0%} of a cold probe)" if resolve and r.cold_s else ""), ""),
        ("warm env materialisation, median (ms)", _fmt(med and med * 1000, ".1f")
         + f"  ({r.hits}/{len(r.materialise_s)} hits)",
         _verdict(med < MATERIALISE_TARGET_S and r.hits == len(r.materialise_s) if med is not None else None)),
        ("naive venv+pip loop (s)", _fmt(r.naive_s, ".2f") + naive_note
         + (f"  WRONG EXIT for {r.naive_wrong}" if r.naive_wrong else ""), ""),
        ("speed-up naive / cold", _fmt(r.speedup, ".1f") + ("x" if r.speedup is not None else ""),
         _verdict(r.speedup >= SPEEDUP_TARGET if r.speedup is not None else None)),
    ]


def report(results: list[SizeResult]) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()} "
          f"({host_platform()}); index on 127.0.0.1; installer uv")
    print("targets: probes <= ceil(log2 N)+2; warm env materialisation < "
          f"{MATERIALISE_TARGET_S * 1000:.0f} ms (all hits); speed-up >= {SPEEDUP_TARGET:.0f}x")
    for r in results:
        print(f"\nN = {r.n}")
        rows = rows_for(r)
        width = max(len(name) for name, _, _ in rows)
        vwidth = max(len(value) for _, value, _ in rows)
        for name, value, verdict in rows:
            print(f"  {name:<{width}}  {value:<{vwidth}}  {verdict}".rstrip())
        if r.error:
            print(f"  ERROR: {r.error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="release counts (default 64 256)")
    parser.add_argument("--naive-sample", type=int, default=None, metavar="K",
                        help="time the naive loop on only the first K probes and extrapolate")
    parser.add_argument("--repeat", type=int, default=3, metavar="R",
                        help="cold/warm bisect runs per N, each cold on a fresh cache; medians reported")
    parser.add_argument("--seed", type=int, default=20240229, help="seed for the planted position")
    args = parser.parse_args(argv)
    if any(n < 2 for n in args.sizes) or args.repeat < 1 or (args.naive_sample is not None and args.naive_sample < 1):
        parser.error("sizes must be >= 2, --repeat and --naive-sample >= 1")
    os.chdir(REPO)
    results = []
    for n in args.sizes:
        print(f"measuring N={n} ...", file=sys.stderr, flush=True)
        results.append(measure(n, args.seed, args.naive_sample, args.repeat))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
