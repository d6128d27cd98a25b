"""Tests for the pure bisection state machine (envbisect.search).

Example tests pin each status and option; hypothesis properties compare every search
with a brute-force answer computed from the whole truth, and check that a search
never asks twice, never leaves [lo, hi], and stays within the probe budget.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envbisect.search import (
    Bisection,
    SearchResult,
    Status,
    Verdict,
    bisect_with,
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


Answer = tuple[Status, int | None, int | None, tuple[int, ...]]


def brute_force(verdicts: list[Verdict], lo: int, hi: int, *, find_fix: bool = False) -> Answer:
    """The answer read straight off a monotone truth, by the rules the search promises."""
    new = G if find_fix else B
    testable = [i for i in range(lo, hi + 1) if verdicts[i] is not U]
    if not testable:
        return Status.INCONCLUSIVE, None, None, ()
    if verdicts[testable[0]] is new:
        return Status.PREDATES_RANGE, None, testable[0], ()
    if verdicts[testable[-1]] is not new:
        return Status.NOT_REPRODUCED, testable[-1], None, ()
    first_new = next(i for i in testable if verdicts[i] is new)
    last_old = max(i for i in testable if i < first_new)
    between = tuple(range(last_old + 1, first_new))
    status = Status.FOUND if not between else Status.INCONCLUSIVE
    return status, last_old, first_new, between


def summary(result: SearchResult) -> Answer:
    return result.status, result.last_old, result.first_new, result.untestable_between


def run_recorded(
    n: int, verdicts: list[Verdict], **kwargs: object
) -> tuple[SearchResult, Recorder]:
    oracle = Recorder(verdicts)
    return bisect_with(n, oracle, **kwargs), oracle


# -- one example per status ------------------------------------------------------


def test_found_regression_in_the_middle() -> None:
    result, oracle = run_recorded(10, truth(10, 6))
    assert summary(result) == (Status.FOUND, 5, 6, ())
    assert oracle.asked[:2] == [0, 9]  # ends first: oldest, then newest
    assert result.probed == tuple(oracle.asked)


def test_not_reproduced_when_newest_is_still_good() -> None:
    result, oracle = run_recorded(8, truth(8, 8))
    assert summary(result) == (Status.NOT_REPRODUCED, 7, None, ())
    assert oracle.asked == [0, 7]


def test_predates_range_stops_after_the_oldest_end() -> None:
    result, oracle = run_recorded(8, truth(8, 0))
    assert summary(result) == (Status.PREDATES_RANGE, None, 0, ())
    assert oracle.asked == [0]


def test_inconclusive_when_only_untestables_separate_old_and_new() -> None:
    result, _ = run_recorded(10, truth(10, 6, untestable={4, 5}))
    assert summary(result) == (Status.INCONCLUSIVE, 3, 6, (4, 5))


def test_inconclusive_when_nothing_is_testable() -> None:
    result, oracle = run_recorded(5, [U] * 5)
    assert summary(result) == (Status.INCONCLUSIVE, None, None, ())
    assert sorted(oracle.asked) == [0, 1, 2, 3, 4]


def test_single_testable_candidate_settles_by_its_state() -> None:
    only_good = [U, U, G, U]
    only_bad = [U, B, U, U]
    assert summary(bisect_with(4, only_good.__getitem__)) == (Status.NOT_REPRODUCED, 2, None, ())
    assert summary(bisect_with(4, only_bad.__getitem__)) == (Status.PREDATES_RANGE, None, 1, ())


def test_single_candidate() -> None:
    assert summary(bisect_with(1, [G].__getitem__)) == (Status.NOT_REPRODUCED, 0, None, ())
    assert summary(bisect_with(1, [B].__getitem__)) == (Status.PREDATES_RANGE, None, 0, ())


def test_two_candidates_need_only_the_ends() -> None:
    result, oracle = run_recorded(2, [G, B])
    assert summary(result) == (Status.FOUND, 0, 1, ())
    assert oracle.asked == [0, 1]


# -- options ---------------------------------------------------------------------


def test_find_fix_swaps_the_terms() -> None:
    verdicts = truth(12, 7, find_fix=True)  # bad up to 6, good from 7
    result, _ = run_recorded(12, verdicts, find_fix=True)
    assert summary(result) == (Status.FOUND, 6, 7, ())
    # The same truth read as a regression hunt starts bad: it predates the range.
    assert bisect_with(12, verdicts.__getitem__).status is Status.PREDATES_RANGE


def test_find_fix_not_reproduced_when_newest_is_still_bad() -> None:
    result, _ = run_recorded(6, [B] * 6, find_fix=True)
    assert summary(result) == (Status.NOT_REPRODUCED, 5, None, ())


def test_lo_hi_restrict_every_probe() -> None:
    result, oracle = run_recorded(50, truth(50, 30), lo=20, hi=40)
    assert summary(result) == (Status.FOUND, 29, 30, ())
    assert oracle.asked[:2] == [20, 40]
    assert all(20 <= i <= 40 for i in oracle.asked)


def test_verify_false_trusts_the_ends() -> None:
    result, oracle = run_recorded(50, truth(50, 30), lo=20, hi=40, verify=False)
    assert summary(result) == (Status.FOUND, 29, 30, ())
    assert 20 not in oracle.asked and 40 not in oracle.asked
    assert 20 not in result.probed and 40 not in result.probed


def test_verify_false_adjacent_ends_need_no_probe() -> None:
    result, oracle = run_recorded(5, truth(5, 3), lo=2, hi=3, verify=False)
    assert summary(result) == (Status.FOUND, 2, 3, ())
    assert oracle.asked == []


def test_verify_false_ignores_held_verdicts_for_the_ends() -> None:
    # A flaky earlier verdict says lo was bad; the user said to trust lo as good.
    search = Bisection(10, known={0: B}, verify=False)
    assert search.next_probe() not in (0, 9)


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
    assert summary(search.result()) == (Status.FOUND, 0, 1, ())


# -- untestable stepping ---------------------------------------------------------


def test_untestable_ends_step_inward() -> None:
    verdicts = truth(10, 5, untestable={0, 1, 9})
    result, oracle = run_recorded(10, verdicts)
    assert oracle.asked[:4] == [0, 1, 2, 9] and oracle.asked[4] == 8
    assert summary(result) == (Status.FOUND, 4, 5, ())


def test_untestable_midpoint_is_skipped_alternately() -> None:
    # Window (0, 10): midpoint 5, then 4 and 6, then 3 and 7 ...
    verdicts = truth(11, 8, untestable={3, 4, 5, 6})
    _, oracle = run_recorded(11, verdicts)
    assert oracle.asked[2:7] == [5, 4, 6, 3, 7]


def test_untestable_ends_between_old_and_new_reported_as_range() -> None:
    verdicts = truth(20, 12, untestable={9, 10, 11})
    result, _ = run_recorded(20, verdicts)
    assert summary(result) == (Status.INCONCLUSIVE, 8, 12, (9, 10, 11))


# -- known verdicts and resume ---------------------------------------------------


def test_known_verdicts_are_never_asked_again() -> None:
    verdicts = truth(64, 40)
    known = {0: G, 63: B, 31: G, 47: B, 20: U}
    result, oracle = run_recorded(64, verdicts, known=known)
    assert summary(result) == (Status.FOUND, 39, 40, ())
    assert not set(oracle.asked) & set(known)
    assert all(31 < i < 47 for i in oracle.asked)  # known verdicts narrowed the window


def test_known_verdicts_outside_lo_hi_are_not_reported() -> None:
    result = bisect_with(30, truth(30, 15).__getitem__, known={2: G}, lo=10, hi=20)
    assert 2 not in result.probed


def test_resume_from_halfway_gives_the_same_result_without_repeats() -> None:
    verdicts = truth(200, 137, untestable={100, 136, 150})
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
    assert summary(result) == (Status.FOUND, 1, 2, ())


# -- progress and parallel probes ------------------------------------------------


def test_remaining_estimate_counts_down_to_zero() -> None:
    search = Bisection(100)
    verdicts = truth(100, 61)
    assert search.remaining_estimate == 2 + math.ceil(math.log2(99))
    search.record(0, G)
    assert search.remaining_estimate == 1 + math.ceil(math.log2(99))
    search.record(99, B)
    assert search.remaining_estimate == math.ceil(math.log2(99))  # window (0, 99)
    while (index := search.next_probe()) is not None:
        assert search.remaining_estimate >= 1
        search.record(index, verdicts[index])
    assert search.remaining_estimate == 0


def test_next_probes_offers_both_ends_then_splits_the_window() -> None:
    search = Bisection(31)
    assert search.next_probes(3) == [0, 30]
    assert search.next_probes(3, in_flight=[0]) == [30]
    search.record(0, G)
    search.record(30, B)
    assert search.next_probes(3) == [7, 15, 22]
    assert search.next_probes(3, in_flight=[15]) == [7, 14, 22]
    with pytest.raises(ValueError):
        search.next_probes(0)


def test_next_probes_waits_while_both_ends_are_in_flight() -> None:
    search = Bisection(10)
    assert search.next_probes(4, in_flight=[0, 9]) == []
    assert not search.done


def test_parallel_rounds_reach_the_sequential_answer() -> None:
    verdicts = truth(120, 77, untestable={50, 76, 90})
    search = Bisection(120)
    asked: list[int] = []
    while probes := search.next_probes(4):
        for index in probes:
            asked.append(index)
            search.record(index, verdicts[index])
    assert len(asked) == len(set(asked))
    assert summary(search.result()) == summary(bisect_with(120, verdicts.__getitem__))


# -- properties against a brute-force answer -------------------------------------


@st.composite
def monotone_cases(draw: st.DrawFn) -> tuple[int, list[Verdict], int, int, bool]:
    n = draw(st.integers(1, 80))
    first_new = draw(st.integers(0, n))
    untestable = draw(st.sets(st.integers(0, n - 1), max_size=n))
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo, n - 1))
    find_fix = draw(st.booleans())
    return n, truth(n, first_new, untestable, find_fix=find_fix), lo, hi, find_fix


@PROPS
@given(monotone_cases())
def test_matches_brute_force(case: tuple[int, list[Verdict], int, int, bool]) -> None:
    n, verdicts, lo, hi, find_fix = case
    result, oracle = run_recorded(n, verdicts, lo=lo, hi=hi, find_fix=find_fix)
    assert summary(result) == brute_force(verdicts, lo, hi, find_fix=find_fix)
    assert len(oracle.asked) == len(set(oracle.asked))
    assert all(lo <= i <= hi for i in oracle.asked)
    assert result.probed == tuple(oracle.asked)


@PROPS
@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_probe_budget_without_untestables(case: tuple[int, int]) -> None:
    n, first_new = case
    result, oracle = run_recorded(n, truth(n, first_new))
    budget = math.ceil(math.log2(n)) + 2 if n >= 2 else 1
    assert len(oracle.asked) <= budget


@PROPS
@given(monotone_cases(), st.data())
def test_resume_anywhere_matches_uninterrupted(
    case: tuple[int, list[Verdict], int, int, bool], data: st.DataObject
) -> None:
    n, verdicts, lo, hi, find_fix = case
    kwargs = {"lo": lo, "hi": hi, "find_fix": find_fix}
    full = bisect_with(n, verdicts.__getitem__, **kwargs)
    cut = data.draw(st.integers(0, len(full.probed)))
    halfway = {i: verdicts[i] for i in full.probed[:cut]}
    oracle = Recorder(verdicts)
    assert bisect_with(n, oracle, known=halfway, **kwargs) == full
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
    assert len(oracle.asked) == len(set(oracle.asked)) <= n
    assert not set(oracle.asked) & set(known)
    if result.last_old is not None and result.first_new is not None:
        assert result.last_old < result.first_new
        assert result.untestable_between == tuple(range(result.last_old + 1, result.first_new))
    assert (result.status is Status.FOUND) == (
        result.last_old is not None and result.first_new == result.last_old + 1
    )
