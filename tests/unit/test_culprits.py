"""Culprit isolation (envbisect.culprits) against scripted oracles: pure, no subprocess.

Each oracle says which pinned environments fail; the tests check that isolation names
the planted change(s), never tests a subset twice, and never re-tests the full diff.
"""

from __future__ import annotations

import pytest

from envbisect.culprits import Change, Finding, apply, diff_sets, ddmin, isolate
from envbisect.search import Verdict

GOOD = {"core": "2.1", "drift": "1.2", "plugin": "2.0", "numpy": "1.26.4"}
BAD = {"core": "2.2", "drift": "1.3", "plugin": "2.1", "numpy": "1.26.4"}


def oracle(rule, log=None):
    """A tester: BAD when ``rule(pins)`` holds, recording the pins it was asked about."""
    def test(pins, changes):
        if log is not None:
            log.append(tuple(c.package for c in changes))
        return Verdict.BAD if rule(pins) else Verdict.GOOD
    return test


def test_diff_sets_lists_moved_added_and_removed_packages_sorted():
    changes = diff_sets({"a": "1", "b": "1", "gone": "3"}, {"a": "2", "b": "1", "new": "0.1"})
    assert changes == (Change("a", "1", "2"), Change("gone", "3", None), Change("new", None, "0.1"))
    assert apply({"a": "1", "gone": "3"}, changes) == {"a": "2", "new": "0.1"}
    assert changes[0].to_dict() == {"package": "a", "from": "1", "to": "2"}


@pytest.mark.parametrize("culprit", ["plugin", "drift", "core"])
def test_single_culprit_is_named_among_three_changes(culprit):
    log = []
    res = isolate(GOOD, BAD, oracle(lambda p: p[culprit] == BAD[culprit], log))
    assert res.finding is Finding.SINGLE
    assert [c.package for c in res.culprits] == [culprit]
    assert len(res.changes) == 3  # numpy did not move
    assert all(len(t) == 1 for t in log) and len(log) == 3  # singles only
    assert culprit in res.summary()


def test_pair_interaction_is_reported_as_needing_both():
    log = []
    res = isolate(GOOD, BAD, oracle(lambda p: p["plugin"] == "2.1" and p["drift"] == "1.3", log))
    assert res.finding is Finding.COMBINATION
    assert {c.package for c in res.culprits} == {"plugin", "drift"}
    assert "together" in res.summary()
    assert len(log) == len(set(log))  # no subset tried twice
    assert ("core", "drift", "plugin") not in log  # the full diff is known bad, never re-run


def test_two_changes_that_only_fail_together_need_no_pair_trial():
    good, bad = {"a": "1", "b": "1"}, {"a": "2", "b": "2"}
    log = []
    res = isolate(good, bad, oracle(lambda p: p == bad, log))
    assert res.finding is Finding.COMBINATION and len(res.culprits) == 2
    assert sorted(log) == [("a",), ("b",)]


def test_a_single_change_is_the_culprit_without_any_trial():
    res = isolate({"a": "1"}, {"a": "2"}, oracle(lambda p: pytest.fail("must not be called")))
    assert res.finding is Finding.SINGLE and res.culprits == (Change("a", "1", "2"),) and res.trials == ()


def test_identical_environments_blame_nothing():
    res = isolate(GOOD, dict(GOOD), oracle(lambda p: True))
    assert res.finding is Finding.NO_CHANGES and res.culprits == ()


def test_untestable_singles_count_as_not_reproducing():
    # Moving plugin alone cannot resolve (it needs the new core): untestable, then the pair fails.
    def test(pins, changes):
        if pins["plugin"] == "2.1" and pins["core"] != "2.2":
            return Verdict.UNTESTABLE
        return Verdict.BAD if pins["plugin"] == "2.1" else Verdict.GOOD
    res = isolate(GOOD, BAD, test)
    assert res.finding is Finding.COMBINATION
    assert {c.package for c in res.culprits} == {"core", "plugin"}
    assert any(t.verdict is Verdict.UNTESTABLE for t in res.trials)


def test_three_way_interaction_is_shrunk_by_ddmin():
    good = {f"p{i}": "1" for i in range(6)}
    bad = {f"p{i}": "2" for i in range(6)}
    needed = {"p1", "p3", "p4"}
    res = isolate(good, bad, oracle(lambda p: all(p[n] == "2" for n in needed)))
    assert res.finding is Finding.COMBINATION
    assert {c.package for c in res.culprits} == needed


def test_ddmin_returns_a_one_minimal_failing_subset():
    changes = [Change(f"p{i}", "1", "2") for i in range(10)]
    calls = []

    def fails(subset):
        calls.append(len(subset))
        return {"p2", "p7"} <= {c.package for c in subset}
    assert {c.package for c in ddmin(changes, fails)} == {"p2", "p7"}
    assert 10 not in calls  # the whole set is known to fail
