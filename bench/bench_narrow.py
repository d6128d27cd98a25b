"""How many probes ``bisect narrow`` spends to name the knob, against trying each alone.

Pure (no subprocess): :func:`envbisect.knobsearch.narrow` against scripted oracles, for N
fine knobs with one planted knob (every position), two knobs needed together (every pair
up to N = 16, sampled above), and nothing that flips it; a probe is one call of the oracle.
The real cost of a probe is the recipe's (about 45 s for the torch.compile recipe of the
README on this machine), so the count is the figure that matters. Prints a table; exits 0.

    .venv/bin/python bench/bench_narrow.py [--sizes 4 8 16 32 64]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics

from envbisect.knobs import Knob
from envbisect.knobsearch import narrow
from envbisect.search import Verdict


def knobs(n: int) -> list[Knob]:
    return [Knob(f"K{i:02d}", f"K{i:02d}", ("0",), env=f"K{i:02d}") for i in range(n)]


def probes_for(ks: list[Knob], planted: set[str]) -> tuple[int, bool]:
    calls = []

    def test(settings):
        calls.append(settings)
        return Verdict.GOOD if planted <= {s.knob for s in settings} else Verdict.BAD

    found = narrow(ks, test)
    return len(calls), {s.knob for s in found.minimal} == planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    args = parser.parse_args()
    rng = random.Random(0)
    print(f"{'N':>4} {'one knob: mean/max':>20} {'two together: mean/max':>24} {'none':>6} {'singles':>8} {'exact':>6}")
    for n in args.sizes:
        ks = knobs(n)
        one = [probes_for(ks, {k.name}) for k in ks]
        pairs = list(itertools.combinations([k.name for k in ks], 2))
        pairs = pairs if len(pairs) <= 120 else rng.sample(pairs, 120)
        two = [probes_for(ks, set(p)) for p in pairs]
        none, _ = probes_for(ks, {"absent"})
        exact = all(ok for _, ok in one + two)
        print(f"{n:>4} {statistics.mean(c for c, _ in one):>12.1f} / {max(c for c, _ in one):<5}"
              f" {statistics.mean(c for c, _ in two):>15.1f} / {max(c for c, _ in two):<6} {none:>6} {n:>8} "
              f"{'yes' if exact else 'NO':>6}")


if __name__ == "__main__":
    main()
