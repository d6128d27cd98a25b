"""Tests for the pure bisection state machine (envbisect.search).

Example tests pin each status and option; hypothesis properties compare the search
with a brute-force answer computed from the whole truth wherever the search promises an
exact answer (untestable candidates only in stretches at the ends of the range, or
anywhere between testable ends), check that any search never asks twice, never leaves
[lo, hi] and only claims what its verdicts show, and check the probe budgets. Stable
midpoints are checked for their band (the optimal count), their alignment, and for
searches with different bounds landing on the same probes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection
from functools import cache
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envbisect.search import (
    Bisection,
    SearchResult,
    Status,
    Term,
    Verdict,
    bisect_with,
    terms_for,
)

G, B, U = Verdict.GOOD, Verdict.BAD, Verdict.UNTESTABLE
PROPS = settings(max_examples=300, deadline=None)


def truth(
    n: int, first_bad: int, untestable: Collection[int] = (), *, find_fix: bool = False
) -> list[Verdict]:
    """A monotone truth: old before ``first_bad``, new from it on, some untestable."""
    old, new = (B, G) if find_fix else (G, B)
    return [U if i in untestable else (new if i >= first_bad else old) for i in range(n)]


class Recorder:
    """An oracle over a fixed list of verdicts that remembers every question asked."""

    def __init__(self, verdicts: list[Verdict]) -> None:
        self.verdicts = verdicts
        self.asked: list[int] = []

    def __call__(self, index: int) -> Verdict:
        self.asked.append(index)
        return self.verdicts[index]


Answer = tuple[Status, int | None, int | None, tuple[int, ...], str | None]


def brute_force(verdicts: list[Verdict], lo: int, hi: int, *, find_fix: bool = False) -> Answer:
    """The answer read straight off a monotone truth, by the rules the search promises.

    Exact where the search is: the untestable candidates of [lo, hi] form a stretch at
    either end (or both), or lo and hi are testable and they lie anywhere between.
    """
    old, new = (B, G) if find_fix else (G, B)
    if verdicts[lo] is new:
        return Status.PREDATES_RANGE, None, lo, (), None
    if verdicts[hi] is old:
        return Status.NOT_REPRODUCED, hi, None, (), None
    testable = [i for i in range(lo, hi + 1) if verdicts[i] is not U]
    first_new = next((i for i in testable if verdicts[i] is new), None)
    if first_new is None:
        # Everything testable is old and hi is untestable (or nothing is testable).
        last = testable[-1] if testable else None
        return Status.INCONCLUSIVE, last, None, (), None if last is None else "new"
    last_old = max((i for i in testable if i < first_new), default=None)
    if last_old is None:
        return Status.INCONCLUSIVE, None, first_new, (), "old"
    between = tuple(range(last_old + 1, first_new))
    status = Status.FOUND if not between else Status.INCONCLUSIVE
    return status, last_old, first_new, between, None


def summary(result: SearchResult) -> Answer:
    return (
        result.status,
        result.last_old,
        result.first_new,
        result.untestable_between,
        result.untestable_edge,
    )


def run_recorded(
    n: int, verdicts: list[Verdict], **kwargs: object
) -> tuple[SearchResult, Recorder]:
    oracle = Recorder(verdicts)
    return bisect_with(n, oracle, **kwargs), oracle


def check_sane(
    result: SearchResult,
    asked: list[int],
    held: dict[int, Verdict],
    lo: int,
    hi: int,
    *,
    find_fix: bool = False,
    verify: bool = True,
) -> None:
    """What any search must satisfy, whatever the truth: it only claims what it saw.

    ``held`` are all verdicts the search had (known ones and asked ones).
    """
    assert len(asked) == len(set(asked)) <= hi - lo + 1
    assert all(lo <= i <= hi for i in asked)
    terms = terms_for(find_fix)
    assumed = {} if verify else {lo: Term.OLD, hi: Term.NEW}

    def term(index: int | None) -> Term | None:
        if index in assumed:
            return assumed[index]
        return terms[held[index]] if index in held else None

    old, new = result.last_old, result.first_new
    if old is not None:
        assert term(old) is Term.OLD
    if new is not None:
        assert term(new) is Term.NEW
    if old is not None and new is not None:
        assert old < new
        assert result.untestable_between == tuple(range(old + 1, new))
        assert all(term(i) is Term.UNTESTABLE for i in result.untestable_between)
    else:
        assert result.untestable_between == ()
    assert (result.status is Status.FOUND) == (old is not None and new == old + 1)
    if result.status is Status.PREDATES_RANGE:
        assert verify and (old, new) == (None, lo) and term(lo) is Term.NEW
    if result.status is Status.NOT_REPRODUCED:
        assert verify and (old, new) == (hi, None) and term(hi) is Term.OLD
    one_sided = result.status is Status.INCONCLUSIVE and (old is None) != (new is None)
    if not one_sided:
        assert result.untestable_edge is None
    elif old is None:
        # Everything older than first_new that was asked is untestable, the neighbour too.
        assert result.untestable_edge == "old" and term(new - 1) is Term.UNTESTABLE
    else:
        assert result.untestable_edge == "new" and term(old + 1) is Term.UNTESTABLE


@cache
def run_split_probes(length: int, testable: int) -> int:
    """Probes needed to split a run of ``length`` untested candidates, always at its
    middle, until every piece is shorter than ``testable`` (all of it for 0)."""
    if length == 0 or length < testable:
        return 0
    half = (length - 1) // 2
    return 1 + run_split_probes(half, testable) + run_split_probes(length - 1 - half, testable)


# -- one example per status ------------------------------------------------------


def test_found_regression_in_the_middle() -> None:
    result, oracle = run_recorded(10, truth(10, 6))
    assert summary(result) == (Status.FOUND, 5, 6, (), None)
    assert oracle.asked[:2] == [0, 9]  # ends first: oldest, then newest
    assert result.probed == tuple(oracle.asked)


def test_not_reproduced_when_newest_is_still_good() -> None:
    result, oracle = run_recorded(8, truth(8, 8))
    assert summary(result) == (Status.NOT_REPRODUCED, 7, None, (), None)
    assert oracle.asked == [0, 7]


def test_predates_range_stops_after_the_oldest_end() -> None:
    result, oracle = run_recorded(8, truth(8, 0))
    assert summary(result) == (Status.PREDATES_RANGE, None, 0, (), None)
    assert oracle.asked == [0]


def test_inconclusive_when_only_untestables_separate_old_and_new() -> None:
    result, _ = run_recorded(10, truth(10, 6, untestable={4, 5}))
    assert summary(result) == (Status.INCONCLUSIVE, 3, 6, (4, 5), None)


def test_inconclusive_when_nothing_is_testable() -> None:
    result, oracle = run_recorded(5, [U] * 5)
    assert summary(result) == (Status.INCONCLUSIVE, None, None, (), None)
    assert sorted(oracle.asked) == [0, 1, 2, 3, 4]


def test_single_testable_candidate_between_untestable_ends_is_inconclusive() -> None:
    # Not NOT_REPRODUCED / PREDATES_RANGE (as when the ends were walked inward): those
    # need the end itself tested, and the untestable newer (older) ones could be new (old).
    only_good = [U, U, G, U]
    only_bad = [U, B, U, U]
    assert summary(bisect_with(4, only_good.__getitem__)) == (
        Status.INCONCLUSIVE, 2, None, (), "new"
    )
    assert summary(bisect_with(4, only_bad.__getitem__)) == (
        Status.INCONCLUSIVE, None, 1, (), "old"
    )


def test_single_candidate() -> None:
    assert summary(bisect_with(1, [G].__getitem__)) == (Status.NOT_REPRODUCED, 0, None, (), None)
    assert summary(bisect_with(1, [B].__getitem__)) == (Status.PREDATES_RANGE, None, 0, (), None)
    assert summary(bisect_with(1, [U].__getitem__)) == (Status.INCONCLUSIVE, None, None, (), None)


def test_two_candidates_need_only_the_ends() -> None:
    result, oracle = run_recorded(2, [G, B])
    assert summary(result) == (Status.FOUND, 0, 1, (), None)
    assert oracle.asked == [0, 1]


# -- options ---------------------------------------------------------------------


def test_find_fix_swaps_the_terms() -> None:
    verdicts = truth(12, 7, find_fix=True)  # bad up to 6, good from 7
    result, _ = run_recorded(12, verdicts, find_fix=True)
    assert summary(result) == (Status.FOUND, 6, 7, (), None)
    # The same truth read as a regression hunt starts bad: it predates the range.
    assert bisect_with(12, verdicts.__getitem__).status is Status.PREDATES_RANGE


def test_find_fix_not_reproduced_when_newest_is_still_bad() -> None:
    result, _ = run_recorded(6, [B] * 6, find_fix=True)
    assert summary(result) == (Status.NOT_REPRODUCED, 5, None, (), None)


def test_find_fix_untestable_old_stretch() -> None:
    result, _ = run_recorded(12, truth(12, 7, range(5), find_fix=True), find_fix=True)
    assert summary(result) == (Status.FOUND, 6, 7, (), None)
    result, _ = run_recorded(12, truth(12, 5, range(5), find_fix=True), find_fix=True)
    assert summary(result) == (Status.INCONCLUSIVE, None, 5, (), "old")


def test_lo_hi_restrict_every_probe() -> None:
    result, oracle = run_recorded(50, truth(50, 30), lo=20, hi=40)
    assert summary(result) == (Status.FOUND, 29, 30, (), None)
    assert oracle.asked[:2] == [20, 40]
    assert all(20 <= i <= 40 for i in oracle.asked)


def test_verify_false_trusts_the_ends() -> None:
    result, oracle = run_recorded(50, truth(50, 30), lo=20, hi=40, verify=False)
    assert summary(result) == (Status.FOUND, 29, 30, (), None)
    assert 20 not in oracle.asked and 40 not in oracle.asked
    assert 20 not in result.probed and 40 not in result.probed


def test_verify_false_adjacent_ends_need_no_probe() -> None:
    result, oracle = run_recorded(5, truth(5, 3), lo=2, hi=3, verify=False)
    assert summary(result) == (Status.FOUND, 2, 3, (), None)
    assert oracle.asked == []


def test_verify_false_ignores_held_verdicts_for_the_ends() -> None:
    # A flaky earlier verdict says lo was bad; the user said to trust lo as good.
    search = Bisection(10, known={0: B}, verify=False)
    assert search.next_probe() not in (0, 9)


def test_verify_false_with_untestable_ends_assumed_testable() -> None:
    # The ends are assumed old and new, so untestable verdicts held for them change nothing.
    known = {20: U, 40: U}
    result = bisect_with(50, truth(50, 30).__getitem__, lo=20, hi=40, verify=False, known=known)
    assert summary(result) == (Status.FOUND, 29, 30, (), None)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Bisection(0)
    with pytest.raises(ValueError):
        Bisection(5, lo=3, hi=2)
    with pytest.raises(ValueError):
        Bisection(5, hi=5)
    with pytest.raises(ValueError):
        Bisection(5, lo=2, hi=2, verify=False)
    with pytest.raises(ValueError):
        Bisection(5, known={7: G})
    search = Bisection(5)
    with pytest.raises(ValueError):
        search.record(5, G)
    with pytest.raises(ValueError):
        search.record(-1, G)
    with pytest.raises(ValueError):
        search.record(1, "maybe")  # type: ignore[arg-type]


def test_result_before_the_end_is_an_error() -> None:
    search = Bisection(10)
    with pytest.raises(RuntimeError):
        search.result()
    assert not search.done


def test_record_accepts_verdict_strings() -> None:
    search = Bisection(2)
    search.record(0, "good")  # type: ignore[arg-type]
    search.record(1, "bad")  # type: ignore[arg-type]
    assert summary(search.result()) == (Status.FOUND, 0, 1, (), None)


# -- untestable candidates -------------------------------------------------------

#: Length of the untestable stretch in the stretch examples; as many testable follow.
STRETCH = 16


def test_ends_are_asked_first_even_when_lo_is_untestable() -> None:
    # Replaces walking inward from an untestable lo (lo, lo+1, lo+2, ...): hi comes next.
    search = Bisection(10)
    assert search.next_probes(2) == [0, 9]
    assert search.next_probe() == 0
    search.record(0, U)
    assert search.next_probe() == 9
    search.record(9, U)
    assert search.next_probe() == 4  # both ends untestable: the middle of 1..8


@pytest.mark.parametrize("first_new", range(STRETCH, 2 * STRETCH + 1))
def test_untestable_old_stretch_is_crossed_by_bisection(first_new: int) -> None:
    n = 2 * STRETCH
    result, oracle = run_recorded(n, truth(n, first_new, range(STRETCH)))
    assert oracle.asked[:2] == [0, n - 1]
    assert len(oracle.asked) - 2 <= math.ceil(math.log2(STRETCH)) + 1
    if first_new == STRETCH:  # the oldest testable is already new: not PREDATES_RANGE
        assert summary(result) == (Status.INCONCLUSIVE, None, STRETCH, (), "old")
    elif first_new == n:
        assert summary(result) == (Status.NOT_REPRODUCED, n - 1, None, (), None)
    else:
        assert summary(result) == (Status.FOUND, first_new - 1, first_new, (), None)


@pytest.mark.parametrize("first_new", range(STRETCH + 1))
def test_untestable_new_stretch_is_crossed_by_bisection(first_new: int) -> None:
    n = 2 * STRETCH
    result, oracle = run_recorded(n, truth(n, first_new, range(STRETCH, n)))
    assert oracle.asked[:2] == ([0] if first_new == 0 else [0, n - 1])
    assert len(oracle.asked) - 2 <= math.ceil(math.log2(STRETCH)) + 1
    if first_new == 0:
        assert summary(result) == (Status.PREDATES_RANGE, None, 0, (), None)
    elif first_new == STRETCH:  # the newest testable is still old: not NOT_REPRODUCED
        assert summary(result) == (Status.INCONCLUSIVE, STRETCH - 1, None, (), "new")
    else:
        assert summary(result) == (Status.FOUND, first_new - 1, first_new, (), None)


def test_both_ends_untestable_probe_the_longest_untested_run() -> None:
    verdicts = truth(10, 7, untestable={0, 4, 9})
    result, oracle = run_recorded(10, verdicts)
    # Run 1..8 -> its exact middle 4 (untestable); runs 1..3 and 5..8 -> the longer:
    # 6 (old); then the window (6, 9) below the untestable hi, where 7 and 8 both leave
    # one probe -> the rounder 8 (new); then the usual window (6, 8) -> 7 (new).
    assert oracle.asked == [0, 9, 4, 6, 8, 7]
    assert summary(result) == (Status.FOUND, 6, 7, (), None)


def test_equal_untested_runs_probe_the_older_one() -> None:
    assert Bisection(9, known={0: U, 4: U, 8: U}).next_probe() == 2


def test_untestable_hole_beside_an_untestable_end_may_hide_the_old_side() -> None:
    # Only a stretch at the end is assumed: a hole between the untestable lo and the
    # testable candidates raises the floor past them. The answer says so honestly.
    verdicts = [U, G, G, U, U, U, B, B, B, B, B]
    result, oracle = run_recorded(11, verdicts)
    # (0, 10) -> 8 (new; 2..8 all keep four probes, 8 is the roundest); (0, 8) -> 4
    # (untestable: the floor rises past 1 and 2); (4, 8) -> 6 (new); (4, 6) -> 5
    # (untestable): floor and first new meet.
    assert oracle.asked == [0, 10, 8, 4, 6, 5]
    assert summary(result) == (Status.INCONCLUSIVE, None, 6, (), "old")


def test_untestable_midpoint_is_stepped_around() -> None:
    # Window (0, 10): 8 (new, the roundest of 2..8); window (0, 8): 1..7 leave only 4
    # (untestable); then 3 or 5 (equally round and central: the lower), untestable;
    # then 2 or 6 (likewise), 2 (old); window (2, 8): 6, 5 (both untestable), then 7
    # (old).
    verdicts = truth(11, 8, untestable={3, 4, 5, 6})
    result, oracle = run_recorded(11, verdicts)
    assert oracle.asked == [0, 10, 8, 4, 3, 2, 6, 5, 7]
    assert summary(result) == (Status.FOUND, 7, 8, (), None)


def test_untestable_stable_midpoint_is_replaced_within_its_band() -> None:
    # (0, 16): 15 untested leave only 8; once it is untestable, 7 or 9 (equally round
    # and central: the lower), then 6 or 10 (rounder than 9), each keeping four probes.
    search = Bisection(17, known={0: G, 16: B})
    assert search.next_probe() == 8
    search.record(8, U)
    assert search.next_probe() == 7
    search.record(7, U)
    assert search.next_probe() == 6


def test_untestable_ends_between_old_and_new_reported_as_range() -> None:
    verdicts = truth(20, 12, untestable={9, 10, 11})
    result, _ = run_recorded(20, verdicts)
    assert summary(result) == (Status.INCONCLUSIVE, 8, 12, (9, 10, 11), None)


# -- known verdicts and resume ---------------------------------------------------


def test_known_verdicts_are_never_asked_again() -> None:
    verdicts = truth(64, 40)
    known = {0: G, 63: B, 31: G, 47: B, 20: U}
    result, oracle = run_recorded(64, verdicts, known=known)
    assert summary(result) == (Status.FOUND, 39, 40, (), None)
    assert not set(oracle.asked) & set(known)
    assert all(31 < i < 47 for i in oracle.asked)  # known verdicts narrowed the window


def test_known_verdicts_outside_lo_hi_are_not_reported() -> None:
    result = bisect_with(30, truth(30, 15).__getitem__, known={2: G}, lo=10, hi=20)
    assert 2 not in result.probed


def test_resume_from_halfway_gives_the_same_result_without_repeats() -> None:
    verdicts = truth(200, 137, untestable={*range(40), 100, 136, 150})
    first = Bisection(200)
    oracle = Recorder(verdicts)
    for _ in range(4):
        index = first.next_probe()
        assert index is not None
        first.record(index, oracle(index))
    halfway = {i: verdicts[i] for i in oracle.asked}
    full = bisect_with(200, verdicts.__getitem__)

    second_oracle = Recorder(verdicts)
    resumed = bisect_with(200, second_oracle, known=halfway)
    assert resumed == full  # same answer and the same probes, in the same order
    assert not set(second_oracle.asked) & set(halfway)
    assert tuple(oracle.asked) + tuple(second_oracle.asked) == full.probed


def test_non_monotone_known_verdicts_pick_the_first_new_after_the_oldest_end() -> None:
    # bad at 3 below good at 6: the window is (0, 3), the first new after the old end.
    known = {0: G, 9: B, 3: B, 6: G}
    result = bisect_with(10, truth(10, 2).__getitem__, known=known)
    assert summary(result) == (Status.FOUND, 1, 2, (), None)


# -- progress and parallel probes ------------------------------------------------


def test_remaining_estimate_counts_down_to_zero() -> None:
    search = Bisection(100)
    verdicts = truth(100, 61, untestable=range(30))
    assert search.remaining_estimate == 2 + math.ceil(math.log2(99))
    search.record(0, U)
    assert search.remaining_estimate == 1 + math.ceil(math.log2(99))
    search.record(99, B)
    assert search.remaining_estimate == math.ceil(math.log2(99))  # window (0, 99)
    while (index := search.next_probe()) is not None:
        assert search.remaining_estimate >= 1
        search.record(index, verdicts[index])
    assert search.remaining_estimate == 0


def test_next_probes_offers_both_ends_then_splits_the_window() -> None:
    search = Bisection(31)
    assert search.next_probes(2) == [0, 30]
    assert search.next_probes(3) == [0, 15, 30], "a spare slot goes to the middle, not idle"
    assert search.next_probes(4) == [0, 10, 20, 30]
    assert search.next_probes(3, in_flight=[0]) == [30], "an end in flight: the other end alone"
    assert search.next_probes(1, in_flight=[0]) == [30], "one at a time: the ends alone"
    search.record(0, G)
    search.record(30, B)
    assert search.next_probes(3) == [7, 15, 22]
    assert search.next_probes(3, in_flight=[15]) == [7, 14, 22]
    with pytest.raises(ValueError):
        search.next_probes(0)


@pytest.mark.parametrize("ends", [(U, B), (G, U), (U, U)], ids=["floor", "ceiling", "run"])
def test_next_probes_split_one_sided_windows_and_runs_alike(ends: tuple[Verdict, Verdict]) -> None:
    search = Bisection(31, known=dict(zip((0, 30), ends)))
    assert search.next_probes(3) == [7, 15, 22]
    assert search.next_probes(3, in_flight=[15]) == [7, 14, 22]


def test_next_probes_one_skips_an_in_flight_stable_midpoint() -> None:
    search = Bisection(256, known={0: G, 255: B})
    assert search.next_probes(1) == [search.next_probe()] == [128]
    assert search.next_probes(1, in_flight=[128]) == [127]  # the band is 127..128
    narrow = Bisection(17, known={0: G, 16: B})  # the band is 8 alone
    assert narrow.next_probes(1, in_flight=[8]) == [7]  # nearest the middle, lower first


def test_next_probes_waits_while_both_ends_are_in_flight() -> None:
    search = Bisection(10)
    assert search.next_probes(4, in_flight=[0, 9]) == []
    assert not search.done


@pytest.mark.parametrize("untestable", [{50, 76, 90}, {*range(40), 76}, {*range(90, 120)}])
def test_parallel_rounds_reach_the_sequential_answer(untestable: set[int]) -> None:
    verdicts = truth(120, 77, untestable)
    search = Bisection(120)
    asked: list[int] = []
    while probes := search.next_probes(4):
        for index in probes:
            asked.append(index)
            search.record(index, verdicts[index])
    assert len(asked) == len(set(asked))
    assert summary(search.result()) == summary(bisect_with(120, verdicts.__getitem__))


def rounds_of(search: Bisection, verdicts: list[Verdict], k: int) -> tuple[int, list[int]]:
    """Drive ``search`` in rounds of ``k`` (each waits for all); (rounds, indices asked)."""
    rounds, asked = 0, []
    while probes := search.next_probes(k):
        rounds += 1
        for index in probes:
            asked.append(index)
            search.record(index, verdicts[index])
    return rounds, asked


def test_parallel_rounds_without_ends_first_split_the_range_at_once() -> None:
    """ends_first=False: the first round of 3 splits 256 candidates in four, the ends wait;
    an answer between two probed candidates needs neither end."""
    verdicts = truth(256, 111)
    search = Bisection(256, ends_first=False)
    assert search.next_probes(3) == [64, 127, 191]
    rounds, asked = rounds_of(search, verdicts, 3)
    assert rounds == 4 and 0 not in asked and 255 not in asked, (rounds, asked)
    assert summary(search.result()) == (Status.FOUND, 110, 111, (), None)


@pytest.mark.parametrize("first_new, end", [(0, 0), (1, 0), (64, None), (100, None), (192, None), (256, 255)])
def test_parallel_rounds_ask_for_an_end_once_they_rest_on_it(first_new: int, end: int | None) -> None:
    """Two rounds all on one side (a recipe failing everywhere: first_new 0) bring that end
    into the third round, with two candidates splitting the sixteenth beside it; one such
    round is not enough (first_new 64: the second round finds the change inside)."""
    verdicts = truth(256, first_new)
    search = Bisection(256, ends_first=False)
    for _ in range(2):
        for index in search.next_probes(3):
            search.record(index, verdicts[index])
    third = search.next_probes(3)
    if end is None:
        assert 0 not in third and 255 not in third
    else:
        assert end in third and len(third) == 3, third
    rounds, asked = rounds_of(search, verdicts, 3)
    assert summary(search.result()) == brute_force(verdicts, 0, 255)
    if first_new == 0:
        assert rounds == 1 and 255 not in asked, "failing everywhere: three rounds in all, the new end never asked"
    if end is None:
        assert 0 not in asked and 255 not in asked, "an answer between two probed candidates needs no end"


def test_forks_and_open_keep_ends_first_off() -> None:
    search = Bisection(16, ends_first=False)
    assert search.fork(8, B).ends_first is False
    search.record(8, B)
    assert [i for i in range(16) if search.open(i)] == list(range(0, 8)), "lo (not asked yet) and the window below 8"
    assert search.remaining_estimate == 1 + 3
    search.record(4, G)
    assert [i for i in range(16) if search.open(i)] == [5, 6, 7], "the window left lo behind: never asked"


# -- properties ------------------------------------------------------------------


class Case(NamedTuple):
    n: int
    verdicts: list[Verdict]
    lo: int
    hi: int
    find_fix: bool

    @property
    def kwargs(self) -> dict[str, object]:
        return {"lo": self.lo, "hi": self.hi, "find_fix": self.find_fix}


@st.composite
def monotone_cases(draw: st.DrawFn, shape: str) -> Case:
    """A monotone truth over a random [lo, hi], untestable candidates placed by ``shape``.

    ``edges``: a stretch at either end of [lo, hi] or both, none in between;
    ``holes``: lo and hi testable, anything in between; ``any``: anywhere.
    Untestable candidates outside [lo, hi] are drawn freely in every shape.
    """
    n = draw(st.integers(1, 80))
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo, n - 1))
    first_new = draw(st.integers(0, n))
    find_fix = draw(st.booleans())
    outside = {i for i in draw(st.sets(st.integers(0, n - 1))) if not lo <= i <= hi}
    if shape == "edges":
        prefix = draw(st.integers(0, hi - lo + 1))
        suffix = draw(st.integers(0, hi - lo + 1 - prefix))
        inside = {*range(lo, lo + prefix), *range(hi + 1 - suffix, hi + 1)}
    elif shape == "holes":
        inside = draw(st.sets(st.integers(lo + 1, hi - 1))) if hi - lo >= 2 else set()
    else:
        inside = draw(st.sets(st.integers(lo, hi)))
    return Case(n, truth(n, first_new, inside | outside, find_fix=find_fix), lo, hi, find_fix)


@PROPS
@given(st.one_of(monotone_cases("edges"), monotone_cases("holes")))
def test_matches_brute_force(case: Case) -> None:
    result, oracle = run_recorded(case.n, case.verdicts, **case.kwargs)
    assert summary(result) == brute_force(
        case.verdicts, case.lo, case.hi, find_fix=case.find_fix
    )
    assert result.probed == tuple(oracle.asked)


@PROPS
@given(monotone_cases("edges"))
def test_probe_budget_with_untestable_stretches_at_the_ends(case: Case) -> None:
    """Ends, then one halving per probe: ``ceil(log2 N) + 2`` with at most one stretch.

    One-sided windows are plain binary search: inside ``(floor, b)`` / ``(a, ceiling)``
    nothing is held and, the testable candidates being contiguous, the usual window
    they lead to holds no untestable one either, so each probe at the midpoint leaves
    at most half of the interval's candidates. With both ends untestable, an untestable
    answer says nothing about the side the testable candidates are on (with one testable
    candidate any strategy may need all N probes), so finding the first testable one
    costs one probe per split of the untested runs (each run split at its middle, none
    shorter than the testable stretch); the run it was found in is then at most
    ``N / 2`` long, so the halving that follows costs at most ``ceil(log2 N) - 1``.
    """
    result, oracle = run_recorded(case.n, case.verdicts, **case.kwargs)
    size = case.hi - case.lo + 1
    testable = sum(case.verdicts[i] is not U for i in range(case.lo, case.hi + 1))
    both_untestable = case.verdicts[case.lo] is U and case.verdicts[case.hi] is U
    if size == 1:
        budget = 1
    elif both_untestable:
        budget = 1 + run_split_probes(size - 2, testable) + math.ceil(math.log2(size))
    else:
        budget = 2 + math.ceil(math.log2(size))
    assert len(oracle.asked) <= budget


@PROPS
@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_probe_budget_without_untestables(case: tuple[int, int]) -> None:
    n, first_new = case
    result, oracle = run_recorded(n, truth(n, first_new))
    budget = math.ceil(math.log2(n)) + 2 if n >= 2 else 1
    assert len(oracle.asked) <= budget


@PROPS
@given(monotone_cases("any"))
def test_any_untestables_give_a_sane_answer(case: Case) -> None:
    result, oracle = run_recorded(case.n, case.verdicts, **case.kwargs)
    held = {i: case.verdicts[i] for i in oracle.asked}
    check_sane(result, oracle.asked, held, case.lo, case.hi, find_fix=case.find_fix)
    assert result.probed == tuple(oracle.asked)


@PROPS
@given(monotone_cases("any"), st.data())
def test_resume_anywhere_matches_uninterrupted(case: Case, data: st.DataObject) -> None:
    full = bisect_with(case.n, case.verdicts.__getitem__, **case.kwargs)
    cut = data.draw(st.integers(0, len(full.probed)))
    halfway = {i: case.verdicts[i] for i in full.probed[:cut]}
    oracle = Recorder(case.verdicts)
    assert bisect_with(case.n, oracle, known=halfway, **case.kwargs) == full
    assert not set(oracle.asked) & set(halfway)


@PROPS
@given(
    st.integers(2, 80).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.sampled_from(list(Verdict)), min_size=n, max_size=n),
            st.dictionaries(st.integers(0, n - 1), st.sampled_from(list(Verdict)), max_size=n),
            st.booleans(),
        )
    )
)
def test_non_monotone_truth_terminates_sanely(
    case: tuple[int, list[Verdict], dict[int, Verdict], bool],
) -> None:
    n, verdicts, known, verify = case
    result, oracle = run_recorded(n, verdicts, known=known, verify=verify)
    assert not set(oracle.asked) & set(known)
    held = {**known, **{i: verdicts[i] for i in oracle.asked}}
    check_sane(result, oracle.asked, held, 0, n - 1, verify=verify)


def test_fork_learns_one_more_verdict_and_leaves_the_original_alone() -> None:
    search = Bisection(16)
    search.record(0, G)
    search.record(15, B)
    probing = search.next_probe()
    good, bad = search.fork(probing, G), search.fork(probing, B)
    assert good.next_probe() > probing > bad.next_probe()
    assert search.next_probe() == probing and not search.decided(probing)
    assert good.decided(probing) and bad.decided(probing)


# -- stable midpoints -------------------------------------------------------------


def band(lo: int, hi: int) -> range:
    """Indices of the window (lo, hi), nothing inside held, that keep the optimal count:
    at most ``2**(s-1) - 1`` of the ``m`` untested candidates on either side."""
    m = hi - lo - 1
    side = 2 ** (math.ceil(math.log2(m + 1)) - 1) - 1
    return range(hi - 1 - side, lo + 1 + side + 1)


def roundness(index: int) -> int:
    """Trailing zero bits."""
    return (index & -index).bit_length() - 1 if index else 64


def window_probes(n: int, first_new: int, lo: int, hi: int) -> list[int]:
    """The probes a search over the trusted window (lo, hi) asks, in order."""
    _, oracle = run_recorded(n, truth(n, first_new), lo=lo, hi=hi, verify=False)
    return oracle.asked


def plain_midpoints(first_new: int, lo: int, hi: int) -> list[int]:
    """What always probing the exact middle of the window would ask (for comparison)."""
    probes = []
    while hi - lo > 1:
        probes.append(mid := (lo + hi) // 2)
        lo, hi = (lo, mid) if mid >= first_new else (mid, hi)
    return probes


def test_probe_budget_and_answer_for_every_size_and_change() -> None:
    """Every N in 1..300 and every first-new position 0..N: at most ``ceil(log2 N) + 2``
    probes and the exact answer. Walks the decision tree with ``fork`` (each leaf is one
    first-new position) instead of rerunning a search per position."""

    def walk(search: Bisection, low: int, high: int, depth: int, budget: int) -> int:
        # low..high: the first-new positions consistent with the verdicts so far.
        index = search.next_probe()
        if search.n <= 64:
            assert search.next_probes(1) == ([] if index is None else [index])
        if index is None:
            assert low == high
            result = search.result()
            if low == 0:
                assert summary(result) == (Status.PREDATES_RANGE, None, 0, (), None)
            elif low == search.n:
                assert summary(result) == (Status.NOT_REPRODUCED, low - 1, None, (), None)
            else:
                assert summary(result) == (Status.FOUND, low - 1, low, (), None)
            return 1
        assert depth < budget and not search.decided(index)
        leaves = 0
        if low <= index:
            leaves += walk(search.fork(index, B), low, min(high, index), depth + 1, budget)
        if index < high:
            leaves += walk(search.fork(index, G), max(low, index + 1), high, depth + 1, budget)
        return leaves

    for n in range(1, 301):
        budget = math.ceil(math.log2(n)) + 2 if n >= 2 else 1
        assert walk(Bisection(n), 0, n, 0, budget) == n + 1


@PROPS
@given(
    st.integers(3, 2000).flatmap(
        lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=2, max_size=2,
                                                 unique=True).map(sorted))
    )
)
def test_first_window_probe_is_the_roundest_of_its_band(case: tuple[int, list[int]]) -> None:
    n, (lo, hi) = case
    probe = Bisection(n, lo=lo, hi=hi, known={lo: G, hi: B}).next_probe()
    if hi - lo < 2:
        assert probe is None
        return
    allowed = band(lo, hi)
    assert probe in allowed
    assert all(roundness(i) <= roundness(probe) for i in allowed)
    if any(i % 64 == 0 for i in allowed):
        assert probe % 64 == 0


@st.composite
def windows_around_one_candidate(draw: st.DrawFn) -> tuple[int, list[int]]:
    """``n`` and two windows ``lo1, hi1, lo2, hi2`` over it that both contain one
    candidate (as two searches around the same change do)."""
    n = draw(st.integers(3, 2000))
    inside = draw(st.integers(1, n - 2))
    lows = st.integers(0, inside - 1)
    highs = st.integers(inside + 1, n - 1)
    return n, [draw(lows), draw(highs), draw(lows), draw(highs)]


@PROPS
@given(windows_around_one_candidate())
def test_overlapping_bands_share_their_roundest_probe(case: tuple[int, list[int]]) -> None:
    """Two windows over the same candidates probe the same index first whenever the
    roundest index of their bands together lies in both (it is unique: between two
    equally round indices lies a rounder one)."""
    n, (lo1, hi1, lo2, hi2) = case
    first = Bisection(n, lo=lo1, hi=hi1, known={lo1: G, hi1: B}).next_probe()
    second = Bisection(n, lo=lo2, hi=hi2, known={lo2: G, hi2: B}).next_probe()
    one, two = band(lo1, hi1), band(lo2, hi2)
    if one.start > two.stop or two.start > one.stop:
        return  # bands apart: nothing to share
    union = range(min(one.start, two.start), max(one.stop, two.stop))
    roundest = max(union, key=roundness)
    if roundest in one and roundest in two:
        assert first == second == roundest


@pytest.mark.parametrize(
    ("bounds", "other"),
    [((0, 255), (10, 200)), ((0, 1000), (300, 700)), ((37, 901), (120, 650)), ((5, 77), (40, 90))],
)
def test_searches_with_different_bounds_share_their_first_window_probe(
    bounds: tuple[int, int], other: tuple[int, int]
) -> None:
    first = {
        Bisection(1001, lo=lo, hi=hi, known={lo: G, hi: B}).next_probe()
        for lo, hi in (bounds, other)
    }
    assert len(first) == 1


def test_narrower_search_probes_what_the_wider_one_did() -> None:
    # [0, 255] then [10, 200], change at 150: every probe is the same (so a second
    # recipe over the new bounds finds all its environments built). Exact middles
    # would share only the last two: 127, 191, 159, ..., 149, 150 and 105, 152, 128, ...
    wide = window_probes(256, 150, 0, 255)
    narrow = window_probes(256, 150, 10, 200)
    assert wide == narrow == [128, 192, 160, 144, 152, 148, 150, 149]
    middles = set(plain_midpoints(150, 0, 255)) & set(plain_midpoints(150, 10, 200))
    assert middles == {149, 150}


def test_random_reruns_share_probes_far_more_than_plain_midpoints() -> None:
    """Seeded, so deterministic: searches over two random bounds around the same change
    share a good part of their probes (over 6 of about 9 each here), more than twice
    as many as exact middles do (under 3)."""
    rng = random.Random(372)
    shared = plain = 0
    trials = 200
    for _ in range(trials):
        n = rng.randint(64, 1024)
        first_new = rng.randint(1, n - 1)
        (lo1, hi1), (lo2, hi2) = [
            (rng.randint(0, first_new - 1), rng.randint(first_new, n - 1)) for _ in range(2)
        ]
        one, two = window_probes(n, first_new, lo1, hi1), window_probes(n, first_new, lo2, hi2)
        assert len(one) <= math.ceil(math.log2(hi1 - lo1))  # exactly optimal windows
        assert len(two) <= math.ceil(math.log2(hi2 - lo2))
        shared += len(set(one) & set(two))
        middles = plain_midpoints(first_new, lo1, hi1), plain_midpoints(first_new, lo2, hi2)
        plain += len(set(middles[0]) & set(middles[1]))
    assert shared >= 2 * plain
    assert shared >= 5 * trials  # at least five shared probes per pair on average


def even_split(a: int, b: int, untested: list[int], k: int) -> list[int]:
    """The ``k > 1`` rule: nearest the k evenly spaced cut points of (a, b), lower first."""
    free, chosen = list(untested), []
    for j in range(1, k + 1):
        if not free:
            break
        best = min(free, key=lambda i: (abs((k + 1) * i - ((k + 1 - j) * a + j * b)), i))
        chosen.append(best)
        free.remove(best)
    return sorted(chosen)


@PROPS
@given(
    st.integers(3, 200).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sets(st.integers(1, n - 2)),
            st.sets(st.integers(1, n - 2)),
            st.integers(2, 6),
        )
    )
)
def test_parallel_probes_keep_even_spacing(case: tuple[int, set[int], set[int], int]) -> None:
    n, untestable, busy, k = case
    search = Bisection(n, known={0: G, n - 1: B, **{i: U for i in untestable}})
    untested = [i for i in range(1, n - 1) if i not in untestable]
    if not untested:
        assert search.done
        return
    assert search.next_probes(k) == even_split(0, n - 1, untested, k)
    free = [i for i in untested if i not in busy]
    assert search.next_probes(k, in_flight=busy) == even_split(0, n - 1, free, k)


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_multisection_rounds_stay_within_log_k_plus_1(k) -> None:
    """Rounds of k probes (each round waits for all): at most ceil(log_(k+1) N) + 2, and
    the answer of a one-at-a-time search, for every N up to 300 and every change."""
    for n in list(range(2, 70)) + [100, 256, 300]:
        bound = math.ceil(math.log(n, k + 1) - 1e-9) + 2
        for first_bad in range(1, n):
            search = Bisection(n)
            rounds = 0
            while picks := search.next_probes(k):
                rounds += 1
                for i in picks:
                    search.record(i, G if i < first_bad else B)
            res = search.result()
            assert (res.status, res.last_old, res.first_new) == (Status.FOUND, first_bad - 1, first_bad), (n, k)
            assert rounds <= bound, (n, k, first_bad, rounds, bound)


def test_open_is_what_the_search_may_still_ask_for():
    """Prefetch stops the builds of candidates that are no longer open: decided ones and
    those left outside the window."""
    search = Bisection(16)
    assert all(search.open(i) for i in range(16)), "ends unverified: the whole range is open"
    search.record(0, Verdict.GOOD)
    search.record(15, Verdict.BAD)
    search.record(8, Verdict.BAD)
    assert not search.open(8) and not search.open(0) and not search.open(15), "decided"
    assert [i for i in range(16) if search.open(i)] == list(range(1, 8)), "the window left: 1..7"
    for i in range(1, 8):
        search.record(i, Verdict.GOOD if i < 5 else Verdict.BAD)
    assert not any(search.open(i) for i in range(16)), "finished: nothing is open"


@PROPS
@given(st.one_of(monotone_cases("edges"), monotone_cases("holes")), st.integers(2, 5))
def test_parallel_rounds_without_ends_first_match_brute_force(case: Case, k: int) -> None:
    """Planning with the ends assumed changes which candidates are asked, never the answer;
    rounds stay within ceil(log_(k+1) N) + 2 without untestables, and nothing is asked twice."""
    search = Bisection(case.n, **case.kwargs, ends_first=False)
    rounds, asked = rounds_of(search, case.verdicts, k)
    result = search.result()
    assert summary(result) == brute_force(case.verdicts, case.lo, case.hi, find_fix=case.find_fix)
    assert len(asked) == len(set(asked)) and result.probed == tuple(asked)
    size = case.hi - case.lo + 1
    if all(case.verdicts[i] is not U for i in range(case.lo, case.hi + 1)) and size > 1:
        assert rounds <= math.ceil(math.log(size, k + 1) - 1e-9) + 2


@PROPS
@given(monotone_cases("any"), st.integers(1, 4))
def test_parallel_rounds_without_ends_first_give_a_sane_answer(case: Case, k: int) -> None:
    search = Bisection(case.n, **case.kwargs, ends_first=False)
    _, asked = rounds_of(search, case.verdicts, k)
    check_sane(search.result(), asked, {i: case.verdicts[i] for i in asked}, case.lo, case.hi,
               find_fix=case.find_fix)
