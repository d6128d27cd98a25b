"""Noisy metrics: ``--samples auto`` against fixed ``--retries 4``, accuracy and recipe runs.

Usage: ``python bench/bench_noise.py [--trials 50] [--releases 16] [--no-e2e]``

The trials run on the pure core (tests/support/noise_sim.py): the same change-point
search ``bisect run --samples auto`` uses (envbisect.changepoint), fed seeded Gaussian
draws (N(0, 1) before the planted release, N(d, 1) from it on; release 0 is the known
good, the last the known bad), at the default ``--confidence 0.99`` and at 0.85. Fixed
retries judge each of 1 + 4 runs with the best threshold a user could pick (the midpoint
d/2) and combine them as envbisect does (runs that disagree make the probe flaky, hence
untestable), and, for comparison, by a majority vote. "halfway" is the share of trials
in which a release drawing from N(d/2, 1), planted at the change, is reported ambiguous.

Then one real trial end to end (unless ``--no-e2e``): ``bisect run`` as a subprocess on
a loopback index of tiny wheels, with real uv, once with ``--samples auto`` and once
with ``--retries 4 --threshold loss>d/2``, to check the wiring and count real runs.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from _index import REPO, clean_environ

from support.cli import write_recipe
from support.index_server import LocalIndex
from support.noise_sim import BODY, TOOL, adaptive, draws, fixed, publish

from envbisect.sampling import SamplingPlan

PLAN = SamplingPlan("loss")
LOOSE = SamplingPlan("loss", confidence=0.85)


def halfway_share(d: float, trials: int, releases: int) -> float:
    """Share of trials whose release at the change draws from N(d/2, 1) and is reported
    ambiguous (excluded from the answer, named untestable)."""
    ambiguous = 0
    for seed in range(trials):
        half = random.Random(f"half-{seed}").randint(1, releases - 2)
        trial = adaptive(releases, half + 1, draws(releases, half + 1, d, seed, halfway=half), PLAN)
        ambiguous += half in trial.ambiguous
    return ambiguous / trials


def table(trials: int, releases: int, ds: list[float]) -> list[str]:
    lines = [f"{trials} seeded trials per d, {releases} releases, planted at a random release (pure core):", "",
             "| d | auto: found | auto: runs (endpoints) | auto, --confidence 0.85: found | runs "
             "| --retries 4: found | runs | --retries 4, majority: found | runs "
             "| auto runs / retries 4 (0.99, 0.85) | halfway → ambiguous |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in ds:
        stats = {"auto": [0, 0, 0], "loose": [0, 0, 0], "fixed": [0, 0, 0], "majority": [0, 0, 0]}
        for seed in range(trials):
            first_bad = random.Random(f"{seed}-{releases}").randint(1, releases - 1)

            def draw():
                return draws(releases, first_bad, d, seed)
            for name, trial in (("auto", adaptive(releases, first_bad, draw(), PLAN)),
                                ("loose", adaptive(releases, first_bad, draw(), LOOSE)),
                                ("fixed", fixed(releases, first_bad, draw(), d, 4)),
                                ("majority", fixed(releases, first_bad, draw(), d, 4, majority=True))):
                stats[name][0] += trial.found
                stats[name][1] += trial.runs
                stats[name][2] += trial.end_runs
        cells = [f"{100 * found / trials:.0f}% | {runs / trials:.1f}" for found, runs, _ in stats.values()]
        cells[0] += f" ({stats['auto'][2] / trials:.1f})"
        ratios = [100 * stats[m][1] / stats["fixed"][1] for m in ("auto", "loose")]
        lines.append(f"| {d:g} | {' | '.join(cells)} | {ratios[0]:.0f}%, {ratios[1]:.0f}% "
                     f"| {100 * halfway_share(d, trials, releases):.0f}% |")
    return lines


def end_to_end(d: float) -> list[str]:
    """One real trial through the CLI: --samples auto, then --retries 4 --threshold."""
    shifts = {f"1.{m}": (1 if m >= 5 else 0) for m in range(8)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        index = LocalIndex(tmp / "index").start()
        try:
            publish(index, tmp / "dists", "noisy", shifts)
            recipe = write_recipe(tmp / "recipe_noisy.py", BODY.format(pkg="noisy"), package="noisy",
                                  deps=("noisy",), extra_tool=TOOL.rsplit("\n", 2)[0])
            out = []
            for label, extra in (("--metric loss --samples auto", ["--metric", "loss", "--samples", "auto"]),
                                 (f"--retries 4 --threshold loss>{d / 2:g}", ["--retries", "4", "--threshold",
                                                                             f"loss>{d / 2:g}"])):
                argv = [sys.executable, "-m", "envbisect", "run", str(recipe), "--index-url", index.url,
                        "--cache-dir", str(tmp / label.split()[0].strip("-")), "--json", *extra]
                proc = subprocess.run(argv, cwd=tmp, env=clean_environ(NOISE_TRIAL="0", NOISE_D=str(d)),
                                      capture_output=True, text=True, timeout=600)
                result = json.loads(proc.stdout)
                out.append(f"- `bisect run ... {label}` (d={d:g}, 8 releases, first bad 1.5): {result['status']}, "
                           f"first bad {result.get('first_bad')}, {result['executed']} recipe runs, "
                           f"{len(result['probes'])} probes")
            return out
        finally:
            index.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--releases", type=int, default=16)
    parser.add_argument("--no-e2e", action="store_true")
    args = parser.parse_args()
    for line in table(args.trials, args.releases, [1, 2, 3, 4]):
        print(line)
    if not args.no_e2e:
        print("\nEnd to end on the loopback index (real uv, real recipe runs):\n")
        for line in end_to_end(2):
            print(line)
    print(f"\n(envbisect at {REPO})")


if __name__ == "__main__":
    main()
