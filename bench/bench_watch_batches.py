"""What a watch spends on a batch of new releases, and what it catches (pure, no I/O).

For each batch size N and ``batch-probes`` K, every placement of one regression in the
batch (anchor good, release i and later bad) and every regression introduced and fixed
inside the batch (releases i..j-1 bad, j and later good again: the newest is good, like
the anchor) is played through the watch's own planner (``envbisect.watchplan``: batches,
sample, changes) and the real search (``envbisect.search.Bisection``) for every change it
bisects. Printed per (N, K): the mean and worst number of recipe runs, and the share of
regressions-and-fixes found. Figures only; always exits 0.

    .venv/bin/python bench/bench_watch_batches.py [--sizes 1 2 4 8 16 32] [--limits 1 2 4 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bisect"))

from envbisect.search import Bisection, Verdict  # noqa: E402
from envbisect.watchplan import batches, changes, sample  # noqa: E402


def bisect_runs(truth: list[str], lo: int, hi: int, fix: bool) -> tuple[int, int]:
    """Recipe runs a bisection between chain positions lo < hi needs (its ends are known),
    and the first position it names."""
    search = Bisection(len(truth), find_fix=fix, lo=lo, hi=hi,
                       known={lo: Verdict(truth[lo]), hi: Verdict(truth[hi])})
    runs = 0
    while (i := search.next_probe()) is not None:
        search.record(i, Verdict(truth[i]))
        runs += 1
    return runs, search.result().first_new


def play(truth: list[str], limit: int) -> tuple[int, set[int]]:
    """Recipe runs for one batch (truth[0] is the anchor) and the change positions found."""
    names = [str(i) for i in range(len(truth))]
    [batch] = batches(names, {"0": truth[0]}, names[1:])
    picks = sample(batch.releases, limit)
    chain = [("0", truth[0])] + [(p, truth[int(p)]) for p in picks]
    runs, found = len(picks), set()
    for change in changes(chain):
        extra, first = bisect_runs(truth, int(change.old), int(change.new), change.fix)
        runs += extra
        found.add(first)
    return runs, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--limits", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    print(f"{'N':>3} {'K':>2} | {'one regression: runs mean/worst':>31} | "
          f"{'regression+fix inside: runs mean/worst, found':>46}")
    for n in args.sizes:
        for k in args.limits:
            single = [play(["good"] * i + ["bad"] * (n + 1 - i), k)[0] for i in range(1, n + 1)]
            pairs = [(i, j) for i in range(1, n + 1) for j in range(i + 1, n + 1)]
            both = [play(["good"] * i + ["bad"] * (j - i) + ["good"] * (n + 1 - j), k) for i, j in pairs]
            caught = sum(1 for (i, j), (_, found) in zip(pairs, both) if found == {i, j})
            pair_text = (f"{sum(r for r, _ in both) / len(both):6.1f} / {max(r for r, _ in both):3d}, "
                         f"{caught}/{len(pairs)} ({100 * caught / len(pairs):5.1f}%)") if pairs else "(no room)"
            print(f"{n:>3} {k:>2} | {sum(single) / n:24.1f} / {max(single):3d} | {pair_text:>46}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
