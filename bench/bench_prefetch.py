"""Benchmark building environments ahead (``--prefetch``) against probing one at a time.

Serves N releases of ``benchpkg`` on 127.0.0.1 whose wheel downloads each take
``--delay`` seconds (a big wheel: an env build then takes about as long as the recipe,
which sleeps ``--sleep`` seconds), and runs a cold ``bisect run`` with ``--prefetch 0``
and with ``--prefetch 2`` on fresh caches, alternating, ``--repeat`` times. Prints the
median wall times, the probes (identical in both modes), and the share of env-build time
that prefetching hid: (t_off - t_on) / (probes x delay). A report, not a test: exits 0.

    .venv/bin/python bench/bench_prefetch.py [--sizes 64] [--delay 1.0] [--sleep 1.0] [--repeat 2]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from _index import build_fixture, delayed_index_parser
from bench_run import bisect_run


def measure(n: int, delay: float, sleep: float, repeat: int, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"envbisect-prefetch-{n}-") as tmp:
        root = Path(tmp)
        fx = build_fixture(root, n, seed, delay_files_s=delay, recipe_sleep_s=sleep)
        times: dict[str, list[float]] = {"0": [], "2": []}
        probes: dict[str, list[str]] = {}
        try:
            for i in range(repeat):
                for mode in ("0", "2"):
                    result, elapsed = bisect_run(fx, root / f"cache-{mode}-{i}", "--prefetch", mode)
                    times[mode].append(elapsed)
                    probes[mode] = [p["version"] for p in result["probes"]]
        finally:
            fx.index.stop()
    off, on = statistics.median(times["0"]), statistics.median(times["2"])
    count = len(probes["0"])
    hidden = (off - on) / (count * delay) if delay else 0.0
    print(f"N = {n}: {count} probes (same sequence with prefetch: {probes['0'] == probes['2']}); "
          f"wheel download {delay:.1f} s, recipe {sleep:.1f} s")
    print(f"  --prefetch 0: {off:.2f} s (of {' '.join(f'{t:.2f}' for t in times['0'])})")
    print(f"  --prefetch 2: {on:.2f} s (of {' '.join(f'{t:.2f}' for t in times['2'])})")
    print(f"  env-build time hidden: {hidden:.0%} (target >= 70%)")


def main(argv: list[str] | None = None) -> int:
    parser = delayed_index_parser(__doc__, [64])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; index on 127.0.0.1; installer uv", flush=True)
    for n in args.sizes:
        measure(n, args.delay, args.sleep, args.repeat, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
