"""Benchmark the ways probes can run: one at a time, building ahead, ``--jobs 3``, and a
3-worker Dask ``LocalCluster``, side by side on the same index.

Serves N releases of ``benchpkg`` on 127.0.0.1 whose wheel downloads each take ``--delay``
seconds (a big wheel), with a recipe that sleeps ``--sleep`` seconds, and runs a cold
``bisect run`` on a fresh cache in each mode:

* ``sequential``: ``--prefetch 0 --jobs 1`` (every env built when its probe needs it);
* ``prefetch``: ``--prefetch 2`` (the default: the two possible next envs built ahead);
* ``jobs3``: ``--jobs 3`` (three candidates per round: the window is cut in four);
* ``dask3``: ``--executor dask --jobs 3`` against a ``distributed.LocalCluster`` of three
  single-threaded worker processes on this machine, each with its own cache (as three
  machines would have).

Each size runs ``--trials`` planted changes (seeds ``--seed``, ``--seed + 1``, ...; the rounds a
window takes depend on where its change lies) and prints every trial, then the means: wall
time, probes and rounds per mode, the share of env-build time prefetching hid
((t_seq - t_prefetch) / (probes x delay)), the speed-up of ``--jobs 3`` over ``--jobs 1``
(the prefetch mode, the default one-at-a-time run) and the ratio of the cluster to
``--jobs 3``, with the targets beside them. A report, not a test: exits 0.

    .venv/bin/python bench/bench_parallel.py [--sizes 64 256] [--trials 4] [--delay 1.0] [--sleep 1.0]
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from _index import build_fixture, delayed_index_parser
from bench_run import bisect_run

MODES = {
    "sequential": ("--prefetch", "0", "--jobs", "1"),
    "prefetch": ("--prefetch", "2", "--jobs", "1"),
    "jobs3": ("--jobs", "3"),
    "dask3": ("--executor", "dask", "--jobs", "3"),
}


def cluster(root: Path):
    """Three single-threaded worker processes, each with its own cache (as three machines:
    an env one worker built ahead helps only the probe sent to that worker). Logs below
    CRITICAL are silenced: at the cluster's close a worker's last heartbeat can meet the
    scheduler already gone, and its traceback interleaved with the figures."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {f"worker-{n}": {"cls": Nanny, "options": {
        "nthreads": 1, "silence_logs": logging.CRITICAL,
        "env": {"ENVBISECT_CACHE_DIR": str(root / f"worker-cache-{n}")}}}
        for n in range(3)}
    return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                       silence_logs=logging.CRITICAL)


def trial(n: int, delay: float, sleep: float, seed: int) -> dict[str, tuple]:
    """One planted change: each mode's (wall s, probes, rounds, first bad), on one index."""
    with tempfile.TemporaryDirectory(prefix=f"envbisect-parallel-{n}-") as tmp:
        root = Path(tmp)
        fx = build_fixture(root, n, seed, delay_files_s=delay, recipe_sleep_s=sleep)
        rows = {}
        try:
            for mode, flags in MODES.items():
                # The cluster is up for its own mode only: idle, its seven processes (and its
                # scheduler, in this process beside the index's server) cost the other modes'
                # runs CPU they would not lose on a user's machine (paired, 16 changes at
                # N = 256: --jobs 3 0.20 ± 0.13 s a run slower beside it, the default 0.06 s).
                with cluster(root) if mode == "dask3" else nullcontext() as lc:
                    extra = (*flags, "--scheduler", lc.scheduler_address) if mode == "dask3" else flags
                    result, elapsed = bisect_run(fx, root / f"cache-{mode}", *extra)
                rows[mode] = (elapsed, len(result["probes"]), result.get("rounds"), result["first_bad"])
        finally:
            fx.index.stop()
    answers = {r[3] for r in rows.values()}
    print(f"N = {n}, seed {seed}: first bad {fx.first_bad}, answers {'agree' if answers == {fx.first_bad} else answers}; "
          + ", ".join(f"{mode} {t:.2f} s / {p} probes / {r} rounds" for mode, (t, p, r, _) in rows.items())
          + f"; --jobs 3 {rows['prefetch'][0] / rows['jobs3'][0]:.2f}x faster than the default", flush=True)
    return rows


def measure(n: int, delay: float, sleep: float, seeds: list[int]) -> None:
    """The modes side by side, averaged over planted changes (a window's rounds depend on
    where the change lies: at N = 64 one change takes --jobs 3 three rounds, another four)."""
    trials = [trial(n, delay, sleep, seed) for seed in seeds]

    def mean(mode: str, col: int) -> float:
        return sum(t[mode][col] for t in trials) / len(trials)
    print(f"N = {n}: means over {len(trials)} planted changes; wheel download {delay:.1f} s, recipe {sleep:.1f} s")
    for mode in MODES:
        print(f"  {mode:<11} {mean(mode, 0):7.2f} s  {mean(mode, 1):5.1f} probes  {mean(mode, 2):4.1f} rounds")
    seq, pre, jobs, dask = (mean(m, 0) for m in MODES)
    hidden = (seq - pre) / (mean("sequential", 1) * delay) if delay else 0.0
    bound = math.ceil(math.log(n, 4)) + 2
    print(f"  env-build time hidden by prefetch: {hidden:.0%} (target >= 70%)")
    each = sorted(t["prefetch"][0] / t["jobs3"][0] for t in trials)
    print(f"  --jobs 3 vs --jobs 1: {pre / jobs:.2f}x faster (target >= 1.8x; per planted change "
          f"{each[0]:.2f}x to {each[-1]:.2f}x); vs sequential {seq / jobs:.2f}x; "
          f"rounds at most {max(t['jobs3'][2] for t in trials)} (bound ceil(log4 N)+2 = {bound})")
    print(f"  LocalCluster vs --jobs 3: {dask / jobs:.2f}x the time (target <= 1.3x)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = delayed_index_parser(__doc__, [64, 256])
    parser.add_argument("--trials", type=int, default=4, help="planted changes per size (seeds --seed, --seed+1, ...)")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; {os.cpu_count()} cores; index on 127.0.0.1; installer uv", flush=True)
    for n in args.sizes:
        measure(n, args.delay, args.sleep, [args.seed + t for t in range(args.trials)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
