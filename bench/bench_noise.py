"""Noisy metrics: ``--samples auto`` against fixed ``--retries 4``, accuracy and recipe runs.

Usage: ``python bench/bench_noise.py [--trials 50] [--releases 16] [--no-e2e]``

The trials run on the pure core (tests/support/noise_sim.py): the same search state
machine and sampling code ``bisect run`` uses, fed seeded Gaussian draws (N(0, 1) before
the planted release, N(d, 1) from it on; release 0 is the known good, the last the known
bad). Fixed retries judge each of 1 + 4 runs with the best threshold a user could pick
(the midpoint d/2) and combine them as envbisect does (runs that disagree make the
probe flaky, hence untestable), and, for comparison, by a majority vote. "halfway" is
the share of releases drawing from N(d/2, 1) that the sampling reports ambiguous.
"endpoints known" is the same per-candidate test with the two distributions given exactly
(no endpoint runs at all): the floor of what classifying candidates one by one costs.

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
from support.noise_sim import BODY, TOOL, adaptive, draws, fixed, known_ends, publish

from envbisect.sampling import Decision, SamplingPlan, classify, endpoint_rounds, separate

PLAN = SamplingPlan("loss")


def halfway_share(d: float, trials: int) -> float:
    """Share of halfway releases (N(d/2, 1)) classified ambiguous."""
    ambiguous = 0
    for seed in range(trials):
        rng = random.Random(f"half-{seed}")
        good: list[float] = []
        bad: list[float] = []
        for k in endpoint_rounds(PLAN):
            good += [rng.gauss(0, 1) for _ in range(k - len(good))]
            bad += [rng.gauss(d, 1) for _ in range(k - len(bad))]
            if (sep := separate(good, bad, PLAN)).separated:
                break
        else:
            continue
        values: list[float] = []
        while (c := classify(values, sep, PLAN)).decision is Decision.MORE:
            values.append(rng.gauss(d / 2, 1))
        ambiguous += c.decision is Decision.AMBIGUOUS
    return ambiguous / trials


def table(trials: int, releases: int, ds: list[float]) -> list[str]:
    lines = [f"{trials} seeded trials per d, {releases} releases, planted at a random release (pure core):", "",
             "| d | auto: found | auto: runs (endpoints) | --retries 4: found | runs | --retries 4, majority: "
             "found | runs | auto runs / retries 4 | halfway → ambiguous | endpoints known: found | runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in ds:
        stats = {"auto": [0, 0, 0], "fixed": [0, 0, 0], "majority": [0, 0, 0], "known": [0, 0, 0]}
        for seed in range(trials):
            first_bad = random.Random(f"{seed}-{releases}").randint(1, releases - 1)

            def draw():
                return draws(releases, first_bad, d, seed)
            for name, trial in (("auto", adaptive(releases, first_bad, draw(), PLAN)),
                                ("fixed", fixed(releases, first_bad, draw(), d, 4)),
                                ("majority", fixed(releases, first_bad, draw(), d, 4, majority=True)),
                                ("known", known_ends(releases, first_bad, draw(), d, PLAN))):
                stats[name][0] += trial.found
                stats[name][1] += trial.runs
                stats[name][2] += trial.end_runs
        cells = [f"{100 * found / trials:.0f}% | {runs / trials:.1f}" for found, runs, _ in stats.values()]
        cells[0] += f" ({stats['auto'][2] / trials:.1f})"
        ratio = stats["auto"][1] / stats["fixed"][1]
        lines.append(f"| {d:g} | {' | '.join(cells[:3])} | {100 * ratio:.0f}% | {100 * halfway_share(d, trials):.0f}% "
                     f"| {cells[3]} |")
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
