"""Culprit isolation: which of the packages that moved between two environments broke it.

A date bisection ends with a last good and a first bad *environment*, and between the two
several packages may have moved (a release day, or one release dragging a dependency up).
This module diffs the two resolved sets and finds which change reproduces the failure,
delta-debugging style: each change alone on top of the last good environment first, then
pairs, then (for larger sets) Zeller's ddmin to a 1-minimal failing subset. The answer
names the culprit package(s) and versions, or says plainly that the failure needs several
changes together, and which.

It is pure: testing one set of pins is a callback (the session builds and runs the env),
so the search is unit-tested with scripted outcomes. A combination of pins that cannot be
resolved is ``UNTESTABLE`` and is treated as "does not reproduce", as ddmin does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import combinations

from envbisect.search import Verdict

#: Above this many changes, pairs are skipped (n(n-1)/2 probes) and ddmin runs directly.
MAX_CHANGES_FOR_PAIRS = 8


@dataclass(frozen=True)
class Change:
    """One package whose resolved version differs; None means absent on that side."""

    package: str
    before: str | None
    after: str | None

    def to_dict(self) -> dict:
        """The JSON form reports use: ``{package, from, to}``."""
        return {"package": self.package, "from": self.before, "to": self.after}

    def describe(self) -> str:
        return f"{self.package} {self.before or '(absent)'} → {self.after or '(removed)'}"


class Finding(str, Enum):
    """What culprit isolation concluded."""

    #: One change reproduces the failure on its own (several may, each alone).
    SINGLE = "single"
    #: No change reproduces alone; this set of changes does, together.
    COMBINATION = "combination"
    #: The environments are identical: nothing to blame (a flaky recipe, or the host).
    NO_CHANGES = "no-changes"


@dataclass(frozen=True)
class Trial:
    """One environment tried: the last good set with ``changes`` applied."""

    changes: tuple[Change, ...]
    verdict: Verdict

    def to_dict(self) -> dict:
        return {"changes": [c.to_dict() for c in self.changes], "verdict": self.verdict.value}


@dataclass(frozen=True)
class Isolation:
    """The answer: the finding, the culprit changes, the full diff and every trial."""

    finding: Finding
    culprits: tuple[Change, ...]
    changes: tuple[Change, ...]
    trials: tuple[Trial, ...]

    def summary(self) -> str:
        """One sentence a user reads in a report."""
        names = ", ".join(c.describe() for c in self.culprits)
        if self.finding is Finding.SINGLE:
            return f"culprit: {names}" if len(self.culprits) == 1 else f"each of these reproduces alone: {names}"
        if self.finding is Finding.COMBINATION:
            return f"the failure needs several changes together: {names} (none reproduces alone)"
        return "the last good and first bad environments are identical: nothing to blame (flaky recipe?)"

    def to_dict(self) -> dict:
        return {"finding": self.finding.value, "summary": self.summary(),
                "culprits": [c.to_dict() for c in self.culprits],
                "changes": [c.to_dict() for c in self.changes],
                "trials": [t.to_dict() for t in self.trials]}


def diff_sets(good: Mapping[str, str], bad: Mapping[str, str]) -> tuple[Change, ...]:
    """Packages whose version differs between two resolved sets, sorted by name."""
    return tuple(Change(name, good.get(name), bad.get(name))
                 for name in sorted(set(good) | set(bad)) if good.get(name) != bad.get(name))


def apply(base: Mapping[str, str], changes: Sequence[Change]) -> dict[str, str]:
    """``base`` with each change made: moved to its new version, added, or removed."""
    pins = dict(base)
    for change in changes:
        if change.after is None:
            pins.pop(change.package, None)
        else:
            pins[change.package] = change.after
    return pins


Tester = Callable[[dict[str, str], tuple[Change, ...]], Verdict]


class _Trials:
    """Runs and remembers trials, so no subset is ever tested twice."""

    def __init__(self, good: Mapping[str, str], test: Tester) -> None:
        self.good, self.test = good, test
        self.seen: dict[frozenset[str], Verdict] = {}
        self.log: list[Trial] = []

    def fails(self, changes: Sequence[Change]) -> bool:
        key = frozenset(c.package for c in changes)
        if key not in self.seen:
            ordered = tuple(sorted(changes, key=lambda c: c.package))
            verdict = Verdict(self.test(apply(self.good, ordered), ordered))
            self.seen[key] = verdict
            self.log.append(Trial(ordered, verdict))
        return self.seen[key] is Verdict.BAD


def isolate(good: Mapping[str, str], bad: Mapping[str, str], test: Tester) -> Isolation:
    """Find the change(s) that turn the ``good`` resolved set into a failing one.

    ``test(pins, changes)`` builds an environment with exactly ``pins`` and returns its
    verdict. The full diff is assumed to fail (it is the first bad environment), so it
    is never re-tested, and neither is a single change when it is the whole diff.
    """
    changes = diff_sets(good, bad)
    trials = _Trials(good, test)
    if not changes:
        return Isolation(Finding.NO_CHANGES, (), (), ())
    if len(changes) == 1:
        return Isolation(Finding.SINGLE, changes, changes, ())
    singles = tuple(c for c in changes if trials.fails((c,)))
    if singles:
        return Isolation(Finding.SINGLE, singles, changes, tuple(trials.log))
    if len(changes) == 2:
        return Isolation(Finding.COMBINATION, changes, changes, tuple(trials.log))
    if len(changes) <= MAX_CHANGES_FOR_PAIRS:
        for pair in combinations(changes, 2):
            if trials.fails(pair):
                return Isolation(Finding.COMBINATION, pair, changes, tuple(trials.log))
    # No pair fails alone: shrink the whole diff (known to fail) to a 1-minimal set.
    minimal = ddmin(list(changes), trials.fails)
    return Isolation(Finding.COMBINATION, tuple(minimal), changes, tuple(trials.log))


def ddmin(changes: list[Change], fails: Callable[[Sequence[Change]], bool]) -> list[Change]:
    """Zeller's ddmin: a 1-minimal subset of ``changes`` that still fails.

    ``changes`` as a whole is taken to fail. Subsets and complements are tried at
    increasing granularity; the result is a set from which no single change can be
    removed without the failure going away (as far as the trials could tell).
    """
    n = 2
    while len(changes) >= 2:
        size = len(changes) // n
        chunks = [changes[i * size:(i + 1) * size if i < n - 1 else len(changes)] for i in range(n)]
        for chunk in chunks:
            if fails(chunk):
                changes, n = chunk, 2
                break
        else:
            for i in range(n):
                complement = [c for j, chunk in enumerate(chunks) if j != i for c in chunk]
                if len(complement) < len(changes) and fails(complement):
                    changes, n = complement, max(n - 1, 2)
                    break
            else:
                if n >= len(changes):
                    break
                n = min(n * 2, len(changes))
    return changes
