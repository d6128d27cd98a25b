"""What reading the sources costs (envbisect.sourceprobe), per environment, both ways.

    .venv/bin/python bench/bench_sourceprobe.py [--python PATH ...] [--repeat R]

For each interpreter (default: the one running this script, i.e. the dev venv) it times,
R times each (default 5), and prints the medians of:

* ``build``: :func:`envbisect.envs.built_from`, the read an env's build does in this
  process (no interpreter start; the result goes into the env's marker, and no probe
  pays for it);
* ``probe``: :func:`envbisect.sourceprobe.read_sources`, the extra interpreter start
  after the recipe that every probe paid before, and that a probe in an env built by an
  earlier envbisect still pays; beside a bare ``python -c pass`` start;

then the number of distributions that name a source and the revisions found (both reads
must agree). Point ``--python`` at a cached env's ``bin/python`` holding torch to see that
torch is never imported (its revision is read from ``torch/version.py``). Figures only;
exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from envbisect.envs import built_from
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
    print(f"{'environment':<60} {'build':>8} {'bare start':>10} {'probe':>8} {'dists':>6}  revisions")
    for python in args.python or [Path(sys.executable)]:
        environ = scrubbed_environ(env_bin=python.parent)
        bare = _median_s(lambda: subprocess.run([str(python), "-c", "pass"], env=environ, check=False), args.repeat)
        found: dict = {}
        read = _median_s(lambda: found.update(read_sources(python, environ, 60)), args.repeat)
        root = Path(sys.prefix) if python == Path(sys.executable) else python.parent.parent
        here: dict = {}
        build = _median_s(lambda: here.update(built_from(root) or {}), args.repeat)
        agree = "" if here.get("dists") == found.get("dists") else "  (the two reads differ)"
        revisions = ", ".join(f"{n} {d['revision'][:10]}" for n, d in sorted(found["dists"].items())
                              if d.get("revision")) or "none"
        print(f"{str(python)[-60:]:<60} {build * 1000:>6.0f}ms {bare * 1000:>8.0f}ms {read * 1000:>6.0f}ms "
              f"{len(found['dists']):>6}  {revisions}{'  error: ' + found['error'] if found.get('error') else ''}{agree}")


if __name__ == "__main__":
    main()
