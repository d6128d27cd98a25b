"""The pure bisection state machine.

Knows nothing but ordered candidates (indices ``0..n-1``, oldest release first) and
the verdict learned for each; it never builds, runs or stores anything, so it can be
tested exhaustively and resumed from any set of recorded verdicts.

The search is written in *terms*, like ``git bisect terms``: the oldest candidates are
in the OLD state and the newest in the NEW state, and the answer is the last OLD and
the first NEW candidate. Normally OLD is good and NEW is bad (find the regression);
with ``find_fix=True`` OLD is bad and NEW is good (find the release that fixed it).

The machine holds no hidden progress: every decision is recomputed from the verdicts
it holds, so feeding a fresh :class:`Bisection` the verdicts a first one recorded
puts it in exactly the same place. One pass over the held verdicts goes:

1. Verify the ends (unless ``verify=False``): the oldest testable candidate of
   ``[lo, hi]`` must be OLD and the newest testable one NEW, stepping inward past
   untestable ones. A NEW oldest end means the change predates the range; an OLD
   newest end means it was not reproduced.
2. Narrow the window ``(a, b)``: ``b`` is the smallest NEW index above the oldest
   end, ``a`` the largest OLD index below ``b``. With monotone verdicts this is the
   usual bisection window; with non-monotone ones (flaky recipes, verdicts from
   older runs) it is still a well-defined deterministic choice with ``a < b`` and no
   testable verdict inside, so the search always terminates.
3. Probe the untested candidate nearest the window's midpoint; untestable ones are
   stepped around, alternately below and above the midpoint (like
   ``git bisect skip``). When no untested candidate is left inside the window the
   answer is ``(a, b)``: FOUND when they are adjacent, INCONCLUSIVE with the
   untestable candidates that separate them otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    """What the search learns from one candidate."""

    GOOD = "good"
    BAD = "bad"
    UNTESTABLE = "untestable"


class Term(str, Enum):
    """A verdict seen through the search's terms: which side of the change it is on."""

    OLD = "old"
    NEW = "new"
    UNTESTABLE = "untestable"


class Status(str, Enum):
    """How a finished search ended."""

    #: last_old and first_new are adjacent: the change is pinned to one candidate.
    FOUND = "found"
    #: The newest testable candidate is still in the old state.
    NOT_REPRODUCED = "not-reproduced"
    #: The oldest testable candidate is already in the new state.
    PREDATES_RANGE = "predates-range"
    #: Only untestable candidates separate old and new, or nothing was testable.
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class SearchResult:
    """The answer of a finished search, in candidate indices."""

    status: Status
    #: Last candidate in the old state (last good; last bad with find_fix).
    last_old: int | None
    #: First candidate in the new state (first bad; first good with find_fix).
    first_new: int | None
    #: Untestable indices strictly between last_old and first_new.
    untestable_between: tuple[int, ...]
    #: Indices in [lo, hi] whose verdict the search held, in the order it learned them.
    probed: tuple[int, ...]


def terms_for(find_fix: bool) -> dict[Verdict, Term]:
    """Map verdicts to terms: good is old when hunting a regression, new when hunting a fix."""
    old, new = (Verdict.BAD, Verdict.GOOD) if find_fix else (Verdict.GOOD, Verdict.BAD)
    return {old: Term.OLD, new: Term.NEW, Verdict.UNTESTABLE: Term.UNTESTABLE}


def _ceil_log2(count: int) -> int:
    """Binary-search steps needed to tell apart ``count`` outcomes (0 for count <= 1)."""
    return max(count - 1, 0).bit_length()


@dataclass(frozen=True)
class _Step:
    """Where one pass over the held verdicts leaves the search.

    Exactly one of three shapes: ``result`` set (done); ``ends`` non-empty (an end is
    still unverified; these are the unknown end candidates, oldest end first); or
    ``window`` set with the untested candidates strictly inside it.
    """

    result: SearchResult | None = None
    ends: tuple[int, ...] = ()
    ends_left: int = 0
    window: tuple[int, int] | None = None
    untested: tuple[int, ...] = ()


class Bisection:
    """A bisection over ``n`` ordered candidates, driven by ``next_probe``/``record``.

    ``known`` holds verdicts learned earlier (the store, a resumed run); they are used
    and never asked for again. ``lo``/``hi`` restrict the search to that inclusive
    slice. ``verify=False`` trusts that ``lo`` is old and ``hi`` is new without probing
    them (any verdict held for those two is then ignored).
    """

    def __init__(
        self,
        n: int,
        *,
        find_fix: bool = False,
        known: Mapping[int, Verdict] | None = None,
        lo: int = 0,
        hi: int | None = None,
        verify: bool = True,
    ) -> None:
        if n < 1:
            raise ValueError(f"a bisection needs at least one candidate, got n={n}")
        hi = n - 1 if hi is None else hi
        if not 0 <= lo <= hi < n:
            raise ValueError(f"need 0 <= lo <= hi < n, got lo={lo}, hi={hi}, n={n}")
        if not verify and lo == hi:
            raise ValueError("verify=False needs lo < hi: one candidate cannot be both old and new")
        self.n = n
        self.find_fix = find_fix
        self.lo = lo
        self.hi = hi
        self.verify = verify
        self._terms = terms_for(find_fix)
        # Insertion order of this dict is the order verdicts were learned.
        self._verdicts: dict[int, Verdict] = {}
        for index, verdict in (known or {}).items():
            self.record(index, verdict)

    # -- the driver's interface -------------------------------------------------

    def record(self, index: int, verdict: Verdict) -> None:
        """Learn the verdict for ``index`` (a later verdict for the same index wins)."""
        if not 0 <= index < self.n:
            raise ValueError(f"candidate index {index} is outside 0..{self.n - 1}")
        self._verdicts[index] = Verdict(verdict)

    def next_probe(self) -> int | None:
        """The next index to test, or None when the search is finished."""
        probes = self.next_probes(1)
        return probes[0] if probes else None

    def next_probes(self, k: int = 1, *, in_flight: Iterable[int] = ()) -> list[int]:
        """Up to ``k`` indices worth testing at the same time (for parallel probing).

        ``in_flight`` are indices being tested now; they are never returned. While an
        end is unverified only the end candidates are returned (the window depends on
        them); afterwards the indices split the window into ``k + 1`` near-equal parts.
        An empty list with an unfinished search means: wait for the in-flight results.
        ``next_probes(1)`` is always ``[next_probe()]`` when nothing is in flight.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        busy = set(in_flight)
        step = self._plan()
        if step.result is not None:
            return []
        if step.ends:
            return [i for i in step.ends if i not in busy][:k]
        assert step.window is not None
        a, b = step.window
        free = [i for i in step.untested if i not in busy]
        chosen: list[int] = []
        for j in range(1, k + 1):
            if not free:
                break
            # Nearest to the j-th of k evenly spaced cut points; ties go to the lower
            # index, so a skipped midpoint is replaced alternately below and above it.
            target = (k + 1 - j) * a + j * b
            best = min(free, key=lambda i: (abs((k + 1) * i - target), i))
            chosen.append(best)
            free.remove(best)
        return sorted(chosen)

    def result(self) -> SearchResult:
        """The answer; only valid once ``next_probe()`` returns None."""
        step = self._plan()
        if step.result is None:
            raise RuntimeError(
                "the bisection is not finished: call next_probe() and record() until it is None"
            )
        return step.result

    @property
    def done(self) -> bool:
        """Whether the search has its answer."""
        return self._plan().result is not None

    @property
    def remaining_estimate(self) -> int:
        """Rough number of probes still needed, for progress display (0 when done).

        Unverified ends plus ``ceil(log2(untested span))``; untestable candidates found
        later can make the real number larger.
        """
        step = self._plan()
        if step.result is not None:
            return 0
        if step.window is not None:
            return _ceil_log2(len(step.untested) + 1)
        untested = sum(1 for i in range(self.lo, self.hi + 1) if i not in self._verdicts)
        return step.ends_left + _ceil_log2(max(untested - step.ends_left, 0) + 1)

    # -- one pass over the held verdicts ----------------------------------------

    def _term(self, index: int) -> Term | None:
        """The term held for ``index`` (None: untested), with verify=False assumptions."""
        if not self.verify and index == self.lo:
            return Term.OLD
        if not self.verify and index == self.hi:
            return Term.NEW
        verdict = self._verdicts.get(index)
        return None if verdict is None else self._terms[verdict]

    def _walk(self, indices: Iterable[int]) -> tuple[int | None, Term | None]:
        """Step inward past untestable candidates: the first untested or testable one.

        Returns ``(index, term)``; ``term`` is None for an untested index, and
        ``(None, None)`` means every candidate walked over is untestable.
        """
        for index in indices:
            term = self._term(index)
            if term is not Term.UNTESTABLE:
                return index, term
        return None, None

    def _probed(self) -> tuple[int, ...]:
        """Held verdicts that belong to this search, in the order they were learned."""
        assumed = set() if self.verify else {self.lo, self.hi}
        return tuple(
            i for i in self._verdicts if self.lo <= i <= self.hi and i not in assumed
        )

    def _done(
        self,
        status: Status,
        last_old: int | None = None,
        first_new: int | None = None,
        between: tuple[int, ...] = (),
    ) -> _Step:
        return _Step(
            result=SearchResult(status, last_old, first_new, between, self._probed())
        )

    def _plan(self) -> _Step:
        """Recompute where the search stands from the verdicts held (see module doc)."""
        if self.verify:
            oldest, old_term = self._walk(range(self.lo, self.hi + 1))
            if oldest is None:
                return self._done(Status.INCONCLUSIVE)
            if old_term is None:
                # Also offer the newest end, so parallel callers can test both at once.
                newest, new_term = self._walk(range(self.hi, oldest, -1))
                extra = (newest,) if newest is not None and new_term is None else ()
                return _Step(ends=(oldest, *extra), ends_left=1 + len(extra))
            if old_term is Term.NEW:
                return self._done(Status.PREDATES_RANGE, first_new=oldest)
            newest, new_term = self._walk(range(self.hi, oldest, -1))
            if newest is None:
                # The oldest end is the only testable candidate, and it is old.
                return self._done(Status.NOT_REPRODUCED, last_old=oldest)
            if new_term is None:
                return _Step(ends=(newest,), ends_left=1)
            if new_term is Term.OLD:
                return self._done(Status.NOT_REPRODUCED, last_old=newest)
        else:
            oldest, newest = self.lo, self.hi
        a, b = self._window(oldest, newest)
        inside = range(a + 1, b)
        untested = tuple(i for i in inside if self._term(i) is None)
        if untested:
            return _Step(window=(a, b), untested=untested)
        # Everything left inside the window is untestable.
        status = Status.FOUND if b == a + 1 else Status.INCONCLUSIVE
        return self._done(status, a, b, tuple(inside))

    def _window(self, oldest: int, newest: int) -> tuple[int, int]:
        """The bisection window between a verified-old and a verified-new end.

        ``b`` is the smallest new index above ``oldest`` and ``a`` the largest old index
        below ``b``; both ends qualify, so the window always exists, ``a < b``, and no
        testable verdict lies strictly inside it, even when verdicts are not monotone.
        """
        b = next(i for i in range(oldest + 1, newest + 1) if self._term(i) is Term.NEW)
        a = next(i for i in range(b - 1, oldest - 1, -1) if self._term(i) is Term.OLD)
        return a, b


def bisect_with(n: int, oracle: Callable[[int], Verdict], **kwargs: object) -> SearchResult:
    """Run a whole bisection against ``oracle`` (index -> verdict) and return the answer.

    ``kwargs`` are :class:`Bisection`'s keyword arguments. Useful for tests and for
    callers whose verdicts are cheap.
    """
    search = Bisection(n, **kwargs)  # type: ignore[arg-type]
    while (index := search.next_probe()) is not None:
        search.record(index, oracle(index))
    return search.result()
