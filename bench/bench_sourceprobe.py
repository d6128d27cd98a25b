"""What reading the sources costs a probe (envbisect.sourceprobe), per environment.

    .venv/bin/python bench/bench_sourceprobe.py [--python PATH ...] [--repeat R]

For each interpreter (default: the one running this script, i.e. the dev venv) it times
:func:`envbisect.sourceprobe.read_sources` (one extra interpreter start after the recipe)
against a bare ``python -c pass`` start, R times each (default 5), and prints the medians,
the number of distributions that name a source, and the revisions found. Point
``--python`` at a cached env's ``bin/python`` holding torch to see that torch is never
imported (its revision is read from ``torch/version.py``). Figures only; exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from envbisect.runner import scrubbed_environ
from envbisect.sourceprobe import read_sources


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'environment':<60} {'bare start':>10} {'read':>8} {'dists':>6}  revisions")
    for python in args.python or [Path(sys.executable)]:
        environ = scrubbed_environ(env_bin=python.parent)
        bare = _median_s(lambda: subprocess.run([str(python), "-c", "pass"], env=environ, check=False), args.repeat)
        found: dict = {}
        read = _median_s(lambda: found.update(read_sources(python, environ, 60)), args.repeat)
        revisions = ", ".join(f"{n} {d['revision'][:10]}" for n, d in sorted(found["dists"].items())
                              if d.get("revision")) or "none"
        print(f"{str(python)[-60:]:<60} {bare * 1000:>8.0f}ms {read * 1000:>6.0f}ms {len(found['dists']):>6}  "
              f"{revisions}{'  error: ' + found['error'] if found.get('error') else ''}")


if __name__ == "__main__":
    main()
