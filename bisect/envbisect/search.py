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
puts it in exactly the same place. One pass over the held verdicts of ``[lo, hi]``
goes (``verify=False`` skips step 1 and takes ``lo`` as OLD and ``hi`` as NEW):

1. Ends first: a NEW ``lo`` means the change predates the range; otherwise, while
   ``lo`` or ``hi`` has no verdict, those two are what to probe (both at once for a
   parallel caller). An untestable end is *not* walked past one candidate at a time:
   a stretch of untestable releases at either end (old releases that no longer build
   against today's dependencies, new ones that need something unreleased) is crossed
   by the bisection in step 3, in a logarithmic number of probes.
   (``ends_first=False``, for parallel rounds: the ends wait until the search rests
   on them; see :class:`Bisection`.)
2. With both ends known, an OLD ``hi`` means the change was not reproduced.
3. Otherwise pick the window from what is held: ``b`` is the smallest NEW index and
   ``a`` the largest OLD index below ``b`` (the largest OLD overall when nothing is
   NEW). With non-monotone verdicts (flaky recipes, verdicts from older runs) this is
   still a well-defined deterministic choice that only shrinks, so the search always
   terminates.

   * ``a`` and ``b``: the usual window. Probe its *stable midpoint* (below) among
     the untested candidates inside, which steps around untestable ones (like ``git
     bisect skip``): they are simply not among the candidates counted or chosen. When
     nothing untested is left inside, the answer is ``(a, b)``: FOUND when they are
     adjacent, INCONCLUSIVE with the untestable candidates that separate them
     otherwise.
   * ``b`` but no OLD below it (``lo`` was untestable): the untestable candidates are
     taken to be one stretch at the old end. The floor ``f`` is the largest
     untestable index below ``b``; probe the stable midpoint of ``(f, b)``.
     Untestable raises the floor, OLD gives ``a`` (the usual window), NEW lowers
     ``b``. When ``f`` and ``b`` meet the answer is INCONCLUSIVE with
     ``first_new=b`` and ``untestable_edge="old"``: every older candidate looked
     untestable. This is never PREDATES_RANGE, which needs ``lo`` itself tested NEW.
   * ``a`` but no NEW above it (``hi`` was untestable): the mirror image, with the
     ceiling ``c``, the smallest untestable index above ``a``; the answer is
     INCONCLUSIVE with ``last_old=a`` and ``untestable_edge="new"``.
   * Neither (both ends untestable): probe the exact middle (the lower of two) of
     the longest run of consecutive untested candidates (the older run on a tie)
     until one is testable; INCONCLUSIVE with neither answer when nothing is. This
     phase hunts for any testable candidate, not for the change, so it splits at the
     middle (see probe counts) rather than at a stable midpoint.

Stable midpoints (:mod:`envbisect.midpoints`, as cargo-bisect-rustc does): among the
splits that keep a window's probe count optimal, the index with the most trailing zero
bits, so searches with other bounds land on the same probes.

Probe counts: with testable ends, or an untestable stretch at only one end, a search
over ``N`` candidates asks at most ``ceil(log2 N) + 2`` times: the two ends, then
at most the optimal ``ceil(log2(m + 1)) <= ceil(log2 N)`` for the window of
``m <= N - 2`` untested candidates, since every stable midpoint lowers that number by
at least one whatever the verdict (an untestable one at a stretch's edge only moves
the floor or ceiling past it). With both ends untestable no strategy can promise that
(an untestable answer does not say on which side the testable candidates lie);
finding the first testable one costs one probe per run split, then the halving
resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from envbisect.midpoints import ceil_log2, split_evenly, stable_midpoint


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
    #: The newest candidate (hi) was tested and is still in the old state.
    NOT_REPRODUCED = "not-reproduced"
    #: The oldest candidate (lo) was tested and is already in the new state.
    PREDATES_RANGE = "predates-range"
    #: Only untestable candidates separate old and new, or everything on one side of
    #: the change (see ``untestable_edge``) or on both was untestable.
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
    #: Set only for an INCONCLUSIVE answer with one side missing: ``"old"`` when every
    #: candidate older than first_new was untestable (last_old is None), ``"new"`` when
    #: every candidate newer than last_old was (first_new is None).
    untestable_edge: str | None = None


def terms_for(find_fix: bool) -> dict[Verdict, Term]:
    """Map verdicts to terms: good is old when hunting a regression, new when hunting a fix."""
    old, new = (Verdict.BAD, Verdict.GOOD) if find_fix else (Verdict.GOOD, Verdict.BAD)
    return {old: Term.OLD, new: Term.NEW, Verdict.UNTESTABLE: Term.UNTESTABLE}


@dataclass(frozen=True)
class _Step:
    """Where one pass over the held verdicts leaves the search.

    Exactly one of three shapes: ``result`` set (done); ``ends`` non-empty (the ends of
    ``[lo, hi]`` that have no verdict yet, ``lo`` first, with the ``window`` they bound
    and the untested candidates inside it, which spare slots go to); or ``window`` set
    with the untested candidates strictly inside it, to be probed at its stable midpoint
    (``stable=False``: at its exact middle, for a run between untestable candidates).
    """

    result: SearchResult | None = None
    ends: tuple[int, ...] = ()
    window: tuple[int, int] | None = None
    untested: tuple[int, ...] = ()
    stable: bool = True


#: With ``ends_first=False``, an unverified end joins a round once the window beside it
#: is at most this share of the range: two rounds of 3 (a sixteenth), not one (a quarter).
#: Asked after one one-sided round, the end took a slot from the splitting probes in a
#: quarter of all searches: mean rounds of 3 were 3.25 (N = 64) and 4.25 (N = 256), now
#: 3.06 and 4.06; a recipe failing everywhere is caught in round 3 instead of 2.
END_NEAR = 1 / 8


class Bisection:
    """A bisection over ``n`` ordered candidates, driven by ``next_probe``/``record``.

    ``known`` holds verdicts learned earlier (the store, a resumed run); they are used
    and never asked for again. ``lo``/``hi`` restrict the search to that inclusive
    slice. ``verify=False`` trusts that ``lo`` is old and ``hi`` is new without probing
    them (any verdict held for those two is then ignored).

    ``ends_first=False`` (parallel rounds, ``--jobs k > 1``) still verifies the ends, but
    not before anything else: the search plans as if ``lo`` were old and ``hi`` new, and
    asks for an unverified end only once it rests on it: the window it narrowed to is
    bounded by that end and within :data:`END_NEAR` of the range (after at least one
    verdict inside the range), or the answer would name it, or the answer is neither
    FOUND nor PREDATES_RANGE (which, as one at a time, needs only ``lo``). The first
    round of ``k`` then splits the range in ``k + 1`` instead of spending two of its ``k``
    slots on the ends; a recipe that fails everywhere is still caught at the end in the
    third round (k = 3), and an answer between two candidates probed inside the range
    needs no end at all (the answer is the same: it rests only on the verdicts beside
    the change).
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
        ends_first: bool = True,
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
        self.ends_first = ends_first
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

    def fork(self, index: int, verdict: Verdict) -> Bisection:
        """A copy of this search that has also learned ``verdict`` for ``index``: what it
        would ask next either way (for building environments ahead, as mozregression
        downloads both halves' builds). The original is not changed."""
        twin = Bisection(self.n, find_fix=self.find_fix, known=self._verdicts, lo=self.lo, hi=self.hi,
                         verify=self.verify, ends_first=self.ends_first)
        twin.record(index, verdict)
        return twin

    def decided(self, index: int) -> bool:
        """Whether a verdict is held for ``index``."""
        return index in self._verdicts

    def open(self, index: int) -> bool:
        """Whether the search may still ask for ``index``: no verdict is held for it and it
        lies inside what is left to search (anywhere in the range while an end is
        unverified). A candidate outside the window will never be asked for."""
        if index in self._verdicts:
            return False
        step = self._plan()
        if step.ends:
            return index in step.ends + step.untested
        return step.result is None and index in step.untested + self._waiting(step)

    def next_probe(self) -> int | None:
        """The next index to test, or None when the search is finished."""
        probes = self.next_probes(1)
        return probes[0] if probes else None

    def next_probes(self, k: int = 1, *, in_flight: Iterable[int] = ()) -> list[int]:
        """Up to ``k`` indices worth testing at the same time (for parallel probing).

        ``in_flight`` are indices being tested now; they are never returned. While an
        end is unverified the end candidates come first, and slots to spare go to
        candidates spread evenly inside the range (with ``k = 3``: both ends and the
        middle; with ``ends_first=False`` the ends come when the search rests on them,
        and spare slots split the window they bound); afterwards, for ``k == 1``, the stable midpoint of the current window
        (the usual one or the one-sided one beside an untestable stretch; see the
        module doc) or the middle of the longest untested run. For ``k > 1``, or when
        every allowed stable midpoint is in flight, the indices split the window into
        ``k + 1`` near-equal parts.
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
            ends = [i for i in step.ends if i not in busy][:k]
            if len(ends) < len(step.ends):  # an end in flight: wait for it
                return ends
            # Slots to spare split the window the ends bound (all of [lo, hi] before
            # anything is known), so that round is not spent on the ends alone.
            free = [i for i in step.untested if i not in busy]
            return sorted(ends + split_evenly(*step.window, free, k - len(ends)))
        assert step.window is not None
        if k == 1 and step.stable:
            stable = stable_midpoint(step.untested, busy)
            if stable is not None:
                return [stable]
        a, b = step.window
        return sorted(split_evenly(a, b, [i for i in step.untested if i not in busy], k))

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
        later (in the middle, or both ends untestable) can make the real number larger.
        """
        step = self._plan()
        if step.result is not None:
            return 0
        return len(step.ends) + len(self._waiting(step)) + ceil_log2(len(step.untested) + 1)

    def _waiting(self, step: _Step) -> tuple[int, ...]:
        """The unverified ends ``step`` does not ask for yet but may (``ends_first=False``:
        they bound its window)."""
        if step.ends or step.result is not None or step.window is None:
            return ()
        return tuple(e for e in dict.fromkeys((self.lo, self.hi)) if e in step.window and self._term(e) is None)

    # -- one pass over the held verdicts ----------------------------------------

    def _term(self, index: int, assume: tuple[int, ...] = ()) -> Term | None:
        """The term held for ``index`` (None: untested), with verify=False assumptions
        and those of the ends in ``assume`` (``lo`` old, ``hi`` new)."""
        if (not self.verify or index in assume) and index == self.lo:
            return Term.OLD
        if (not self.verify or index in assume) and index == self.hi:
            return Term.NEW
        verdict = self._verdicts.get(index)
        return None if verdict is None else self._terms[verdict]

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
        edge: str | None = None,
    ) -> _Step:
        return _Step(
            result=SearchResult(status, last_old, first_new, between, self._probed(), edge)
        )

    def _plan(self) -> _Step:
        """Recompute where the search stands from the verdicts held (see module doc;
        ``ends_first=False``: planned with the unverified ends assumed, which are asked for
        once the search rests on them)."""
        pending = tuple(i for i in (self.lo, self.hi) if self._term(i) is None)
        if self.ends_first or not pending or self.lo == self.hi:
            return self._plan_with(())
        step = self._plan_with(pending)
        res = step.result
        # Near: narrowed by verdicts inside the range (before any, the window is all of it).
        near = step.window is not None and step.window[1] - step.window[0] <= (self.hi - self.lo) * END_NEAR
        needed = tuple(e for e in pending if (
            res is None and near and e in step.window
            or res is not None and (e in (res.last_old, res.first_new)
                                    or res.status not in (Status.FOUND, Status.PREDATES_RANGE))))
        if not needed:
            return step
        if res is not None:  # nothing left inside: only the ends the answer rests on
            return _Step(ends=needed, window=(self.lo, self.hi))
        return replace(step, ends=needed)

    def _plan_with(self, assume: tuple[int, ...]) -> _Step:
        """One pass over the verdicts held, the ends in ``assume`` taken as old / new."""
        lo, hi = self.lo, self.hi
        if self._term(lo, assume) is Term.NEW:
            # Settled whatever hi says, so hi is not asked for.
            return self._done(Status.PREDATES_RANGE, first_new=lo)
        ends = tuple(i for i in dict.fromkeys((lo, hi)) if self._term(i, assume) is None)
        if ends:
            inside = tuple(i for i in range(lo + 1, hi) if i not in self._verdicts)
            return _Step(ends=ends, window=(lo, hi), untested=inside)
        if self._term(hi, assume) is Term.OLD:
            return self._done(Status.NOT_REPRODUCED, last_old=hi)
        terms = {i: self._term(i, assume) for i in range(lo, hi + 1)}
        b = next((i for i, t in terms.items() if t is Term.NEW), None)
        below = range(lo, hi + 1) if b is None else range(lo, b)
        a = next((i for i in reversed(below) if terms[i] is Term.OLD), None)
        if a is not None and b is not None:
            return self._between(a, b, terms)
        if b is not None:
            # lo is untestable (neither old nor new, and known), so a floor exists.
            floor = next(i for i in reversed(below) if terms[i] is Term.UNTESTABLE)
            return self._beside(floor, b, last_old=None, first_new=b, edge="old")
        if a is not None:
            # Likewise hi is untestable, so a ceiling exists.
            ceiling = next(i for i in range(a + 1, hi + 1) if terms[i] is Term.UNTESTABLE)
            return self._beside(a, ceiling, last_old=a, first_new=None, edge="new")
        return self._longest_run(terms)

    def _between(self, a: int, b: int, terms: Mapping[int, Term | None]) -> _Step:
        """The usual window: ``a`` old, ``b`` new, only untestable verdicts inside."""
        inside = range(a + 1, b)
        untested = tuple(i for i in inside if terms[i] is None)
        if untested:
            return _Step(window=(a, b), untested=untested)
        status = Status.FOUND if b == a + 1 else Status.INCONCLUSIVE
        return self._done(status, a, b, tuple(inside))

    def _beside(
        self,
        start: int,
        stop: int,
        *,
        last_old: int | None,
        first_new: int | None,
        edge: str,
    ) -> _Step:
        """A one-sided window: one end testable, the other an untestable stretch's edge.

        Nothing inside is held (any verdict there would have moved ``start`` or
        ``stop``), so every candidate inside is untested.
        """
        untested = tuple(range(start + 1, stop))
        if untested:
            return _Step(window=(start, stop), untested=untested)
        return self._done(Status.INCONCLUSIVE, last_old, first_new, edge=edge)

    def _longest_run(self, terms: Mapping[int, Term | None]) -> _Step:
        """Nothing testable yet: the longest run of untested candidates (older on a tie)."""
        best: tuple[int, ...] = ()
        run: list[int] = []
        for i, term in [*terms.items(), (self.hi + 1, Term.UNTESTABLE)]:
            if term is None:
                run.append(i)
                continue
            if len(run) > len(best):
                best = tuple(run)
            run = []
        if not best:
            return self._done(Status.INCONCLUSIVE)
        return _Step(window=(best[0] - 1, best[-1] + 1), untested=best, stable=False)


def bisect_with(n: int, oracle: Callable[[int], Verdict], **kwargs: object) -> SearchResult:
    """Run a whole bisection against ``oracle`` (index -> verdict) and return the answer.

    ``kwargs`` are :class:`Bisection`'s keyword arguments. Useful for tests and for
    callers whose verdicts are cheap.
    """
    search = Bisection(n, **kwargs)  # type: ignore[arg-type]
    while (index := search.next_probe()) is not None:
        search.record(index, oracle(index))
    return search.result()
