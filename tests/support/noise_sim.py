"""Simulated noisy bisections on the pure core: the same :mod:`envbisect.search` state
machine and :mod:`envbisect.sampling` code a run uses, fed seeded Gaussian draws instead
of recipe runs, so accuracy over many trials costs milliseconds (tests and
``bench/bench_noise.py``; the wiring itself is checked end to end on the loopback index).

A trial has ``n`` releases; releases before ``first_bad`` draw from N(0, 1) and the
others from N(d, 1) (``halfway``: one release draws from N(d/2, 1)). Release 0 is the
known good and release n-1 the known bad, as with ``--good``/``--bad``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from envbisect.policy import Judgement, Outcome, combine
from envbisect.sampling import Decision, SamplingPlan, Separation, Summary, classify, endpoint_rounds, separate
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
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({{"loss": rng.gauss(float(os.environ["NOISE_D"]) * pkg.SHIFT, 1.0)}}, fh)
"""
#: Its ``[tool.envbisect]`` lines: the variables it reads are declared (in the probe key).
TOOL = 'env = ["NOISE_TRIAL", "NOISE_D", "NOISE_KILL_AT", "NOISE_KILL_MARK"]\nmetric = "loss"\nsamples = "auto"'


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
    #: Of ``runs``, those spent on the endpoints (sampled until separated).
    end_runs: int = 0


def draws(n: int, first_bad: int, d: float, seed: int, halfway: int | None = None) -> Callable[[int], float]:
    """A draw function per release: seeded, independent per call."""
    rng = random.Random(seed)

    def draw(i: int) -> float:
        mean = d / 2 if i == halfway else (d if i >= first_bad else 0.0)
        return rng.gauss(mean, 1.0)
    return draw


def adaptive(n: int, first_bad: int, draw: Callable[[int], float], plan: SamplingPlan) -> Trial:
    """``--samples auto``: endpoints until separated, then SPRT per probed release."""
    good: list[float] = []
    bad: list[float] = []
    sep = None
    for k in endpoint_rounds(plan):
        good += [draw(0) for _ in range(k - len(good))]
        bad += [draw(n - 1) for _ in range(k - len(bad))]
        sep = separate(good, bad, plan)
        if sep.separated:
            break
    runs = len(good) + len(bad)
    if sep is None or not sep.separated:
        return Trial(None, False, runs, end_runs=runs)
    search = Bisection(n, lo=0, hi=n - 1)
    search.record(0, Verdict.GOOD)
    search.record(n - 1, Verdict.BAD)
    return replace(_classify_all(search, first_bad, draw, sep, plan, runs), end_runs=runs)


def _classify_all(search: Bisection, first_bad: int, draw: Callable[[int], float], sep: Separation,
                  plan: SamplingPlan, runs: int) -> Trial:
    """Probe the search to its end, each candidate sampled until :func:`classify` decides."""
    ambiguous = []
    while (i := search.next_probe()) is not None:
        values: list[float] = []
        while (c := classify(values, sep, plan)).decision is Decision.MORE:
            values.append(draw(i))
        runs += len(values)
        if c.decision is Decision.AMBIGUOUS:
            ambiguous.append(i)
        search.record(i, {Decision.GOOD: Verdict.GOOD, Decision.BAD: Verdict.BAD}.get(c.decision,
                                                                                     Verdict.UNTESTABLE))
    return _trial(search, first_bad, runs, ambiguous)


def known_ends(n: int, first_bad: int, draw: Callable[[int], float], d: float, plan: SamplingPlan) -> Trial:
    """The same sequential test per candidate, with the endpoints' distributions known
    exactly (N(0, 1) and N(d, 1), never sampled): a lower bound on what any schedule
    that classifies candidates one at a time at ``plan.confidence`` can cost."""
    ends = Separation(Summary(10 ** 6, 0.0, 1.0), Summary(10 ** 6, d, 1.0), 1.0, math.inf, 0.0, True,
                      plan.confidence)
    search = Bisection(n, lo=0, hi=n - 1)
    search.record(0, Verdict.GOOD)
    search.record(n - 1, Verdict.BAD)
    return _classify_all(search, first_bad, draw, ends, plan, 0)


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
