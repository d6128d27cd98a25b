"""Simulated noisy bisections on the pure core: the same :mod:`envbisect.changepoint`
search a ``--samples auto`` run uses (and, for ``--retries``, the :mod:`envbisect.search`
state machine), fed seeded Gaussian draws instead of recipe runs, so accuracy over many
trials costs well under a second each (tests and
``bench/bench_noise.py``; the wiring itself is checked end to end on the loopback index).

A trial has ``n`` releases; releases before ``first_bad`` draw from N(0, 1) and the
others from N(d, 1) (``halfway``: one release draws from N(d/2, 1)). Release 0 is the
known good and release n-1 the known bad, as with ``--good``/``--bad``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from envbisect.policy import Judgement, Outcome, combine
from envbisect.changepoint import ChangePoint, State
from envbisect.sampling import SamplingPlan
from envbisect.search import Bisection, Status, Verdict
from support.wheels import build_wheel

#: The real recipe (``{pkg}``: the package it imports): ``loss ~ N(NOISE_D * SHIFT, 1)``
#: seeded by the trial, the release and ``$ENVBISECT_SAMPLE``; NOISE_KILL_AT="1.7/2"
#: makes it SIGKILL envbisect during that sample, once (NOISE_KILL_MARK records it).
BODY = """
import json, os, random, signal, sys, time
import {pkg} as pkg
sample = os.environ["ENVBISECT_SAMPLE"]
mark = os.environ.get("NOISE_KILL_MARK")
if mark and os.environ.get("NOISE_KILL_AT") == pkg.__version__ + "/" + sample and not os.path.exists(mark):
    open(mark, "w").close()
    os.kill(os.getppid(), signal.SIGKILL)  # envbisect dies mid-sample (kill -9)
    time.sleep(30)
rng = random.Random(os.environ["NOISE_TRIAL"] + "/" + pkg.__version__ + "/" + sample)
unit = float(os.environ.get("NOISE_UNIT", "1"))
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({{"loss": unit * rng.gauss(float(os.environ["NOISE_D"]) * pkg.SHIFT, 1.0)}}, fh)
"""
#: Its ``[tool.envbisect]`` lines: the variables it reads are declared (in the probe key).
TOOL = 'env = ["NOISE_TRIAL", "NOISE_D", "NOISE_UNIT", "NOISE_KILL_AT", "NOISE_KILL_MARK"]\nmetric = "loss"\nsamples = "auto"'


def publish(index, dists: Path, pkg: str, shifts: Mapping[str, float]) -> None:
    """Build and publish ``pkg`` releases whose ``SHIFT`` is ``shifts[version]``."""
    for version, shift in shifts.items():
        files = {f"{pkg}/__init__.py": f'__version__ = "{version}"\nSHIFT = {shift}\n'}
        index.add(build_wheel(dists, pkg, version, files=files))


@dataclass(frozen=True)
class Trial:
    """One simulated bisection's answer and cost."""

    first_bad: int | None
    found: bool
    runs: int
    ambiguous: tuple[int, ...] = ()
    #: Of ``runs``, those spent on the two endpoints.
    end_runs: int = 0


def draws(n: int, first_bad: int, d: float, seed: int, halfway: int | None = None) -> Callable[[int], float]:
    """A draw function per release: seeded, independent per call."""
    rng = random.Random(seed)

    def draw(i: int) -> float:
        mean = d / 2 if i == halfway else (d if i >= first_bad else 0.0)
        return rng.gauss(mean, 1.0)
    return draw


def adaptive(n: int, first_bad: int, draw: Callable[[int], float], plan: SamplingPlan, jobs: int = 1,
             factory: Callable[..., ChangePoint] = ChangePoint) -> Trial:
    """``--samples auto``: the change-point search of a run, each sample a draw
    (``factory``: the search, a subclass in ``bench/bench_noise.py``'s oracles)."""
    cp = factory(n, plan)
    while (step := cp.step(jobs)).state is State.SAMPLE:
        for p in step.picks:
            cp.add(p, draw(p))
    found = step.state is State.FOUND and (step.last_old, step.first_new) == (first_bad - 1, first_bad)
    return Trial(step.first_new, found, cp.runs, tuple(sorted(cp.excluded)),
                 end_runs=len(cp.samples[0]) + len(cp.samples[-1]))


def fixed(n: int, first_bad: int, draw: Callable[[int], float], d: float, retries: int,
          majority: bool = False) -> Trial:
    """``--retries N --threshold metric>d/2`` (the midpoint: the best threshold a user could
    pick): every probe runs 1+N times; runs that disagree make it flaky, hence untestable
    (today's rule, :func:`envbisect.policy.combine`), or with ``majority`` the majority wins."""
    search = Bisection(n, lo=0, hi=n - 1)
    runs = 0
    while (i := search.next_probe()) is not None:
        bads = sum(draw(i) > d / 2 for _ in range(1 + retries))
        runs += 1 + retries
        if majority:
            verdict = Verdict.BAD if 2 * bads > 1 + retries else Verdict.GOOD
        else:
            judged = [Judgement(Outcome.BAD, Verdict.BAD, "bad")] * bads + \
                     [Judgement(Outcome.GOOD, Verdict.GOOD, "good")] * (1 + retries - bads)
            verdict = combine(judged)[0].verdict
        search.record(i, verdict)
    return _trial(search, first_bad, runs, ())


def _trial(search: Bisection, first_bad: int, runs: int, ambiguous: list[int] | tuple) -> Trial:
    res = search.result()
    found = res.status is Status.FOUND and res.first_new == first_bad
    return Trial(res.first_new, found, runs, tuple(ambiguous))
