"""The watch's pure decisions (what is new, batches, probes, changes, back-off) and its
state and status (findings, schedule), without a subprocess or an index."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envbisect.store import Store
from envbisect.watchconfig import WatchSpec
from envbisect.watchplan import (BACKOFF_CAP_S, Batch, Change, backoff_s, batches, changes, grace_s, new_releases,
                                 probe_order, sample)
from envbisect.watchstate import COLUMNS, WatchState, cells, due_in, legacy_seen, schedule, status

HOUR = 3600.0
SPEC = WatchSpec("w", Path("/r.py"), "pkg", every_s=6 * HOUR)


def test_new_is_set_membership_so_a_backport_below_the_newest_is_new() -> None:
    listed = ["2.15.0", "2.15.1", "2.15.2", "2.16.0"]
    assert new_releases(listed, {"2.15.0", "2.15.1", "2.16.0"}) == ["2.15.2"]
    assert new_releases(listed, set(listed)) == []


def test_batches_are_cut_at_judged_releases_and_anchored_below() -> None:
    listed = ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1"]
    verdicts = {"1.0": None, "1.1": "good", "1.3": None, "2.0": "bad"}
    assert batches(listed, verdicts, ["1.2", "1.4", "2.1"]) == [
        Batch("1.1", ("1.2", "1.4")),  # 1.3 was only seen: it does not cut the batch
        Batch("2.0", ("2.1",)),
    ]
    assert batches(listed, verdicts, ["1.0.1"]) == []  # not listed (yanked): nothing to judge


def test_an_untestable_or_yanked_anchor_is_passed_over() -> None:
    listed = ["1.0", "1.2", "1.3"]  # 1.1 was judged good, then yanked
    assert batches(listed, {"1.0": "good", "1.1": "good", "1.2": "untestable"}, ["1.3"]) == [Batch("1.0", ("1.3",))]
    assert batches(["1.3"], {"1.1": "good"}, ["1.3"]) == [Batch(None, ("1.3",))]


@pytest.mark.parametrize("n", range(1, 30))
@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7])
def test_sample_is_bounded_distinct_ordered_and_keeps_the_newest(n: int, limit: int) -> None:
    releases = tuple(f"1.{i}" for i in range(n))
    picks = sample(releases, limit)
    assert len(picks) == min(n, limit) and len(set(picks)) == len(picks)
    assert picks[-1] == releases[-1] and picks == sorted(picks, key=releases.index)
    assert probe_order(picks)[0] == releases[-1] and sorted(probe_order(picks)) == sorted(picks)


def test_changes_step_over_untestable_links() -> None:
    chain = [("1.2", "good"), ("1.4", "untestable"), ("1.5", "good"), ("1.6", "bad"), ("1.8", None),
             ("2.0", "bad"), ("2.1", "good")]
    assert changes(chain) == [Change("1.5", "1.6", fix=False), Change("2.0", "2.1", fix=True)]
    assert changes([("1.0", "bad")]) == [] and changes([]) == []


@pytest.mark.parametrize("verdicts", list(itertools.product("gb", repeat=5)))
def test_every_change_inside_a_small_batch_is_found(verdicts: tuple[str, ...]) -> None:
    """A batch no larger than the probe limit: every change of verdict (a regression
    introduced and fixed inside the batch included) is one adjacent pair of the chain."""
    word = {"g": "good", "b": "bad"}
    batch = [f"2.{i}" for i in range(4)]
    truth = [("1.0", word[verdicts[0]])] + [(v, word[x]) for v, x in zip(batch, verdicts[1:])]
    [found] = batches(["1.0", *batch], {"1.0": truth[0][1]}, batch)
    picked = dict(truth)
    chain = [(found.anchor, picked[found.anchor])] + [(v, picked[v]) for v in sample(found.releases, 4)]
    expected = [i for i in range(1, 5) if truth[i][1] != truth[i - 1][1]]
    assert [c.new for c in changes(chain)] == [truth[i][0] for i in expected]


def test_backoff_is_longer_than_the_interval_doubles_and_is_capped() -> None:
    waits = [backoff_s(6 * HOUR, n) for n in range(1, 12)]
    assert waits[0] == 12 * HOUR and waits[1] == 24 * HOUR
    assert waits == sorted(waits) and max(waits) == BACKOFF_CAP_S
    assert backoff_s(30 * 24 * HOUR, 5) == 60 * 24 * HOUR  # a monthly watch: twice its interval
    assert grace_s(6 * HOUR) == 600 and grace_s(60) == 3


def test_schedule_after_success_and_failures() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    ok = schedule(SPEC, None, t0, None)
    assert ok["failures"] == 0 and ok["last_error"] is None and due_in(SPEC, ok, t0) == 6 * HOUR
    bad = schedule(SPEC, ok, t0, "cannot reach  the index:\nHTTP 503")
    assert bad["failures"] == 1 and bad["last_error"] == "cannot reach the index: HTTP 503"
    worse = schedule(SPEC, bad, t0, "again")
    assert worse["failures"] == 2 and due_in(SPEC, worse, t0) == 24 * HOUR
    assert due_in(SPEC, None, t0) == 0
    assert due_in(SPEC, {"last_check": ok["last_check"]}, t0 + HOUR) == 5 * HOUR  # a row from before next_check


def test_a_fix_closes_the_newest_open_regression_below_it() -> None:
    state = WatchState()
    assert state.found("regression", "1.6", "1.5", 3) is None
    assert state.found("regression", "3.0", "2.9", 4) is None
    closed = state.found("fix", "2.1", "2.0", 5)
    assert closed is not None and closed["version"] == "1.6" and closed["fixed_in"] == "2.1"
    assert [f["version"] for f in state.open()] == ["3.0"]
    assert WatchState.load({"state": state.dump()}).open() == state.open()


def test_status_of_stored_configured_and_unconfigured_watches() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    with Store(None) as store:
        state = WatchState()
        state.found("regression", "1.6", "1.5", 3)
        store.save_check("w", {"1.5": ("good", 1), "1.6": ("bad", 3)}, package="pkg", state=state.dump(),
                         **schedule(SPEC, None, t0, "HTTP 503"))
        store.save_check("w", {"1.5": (None, None), "1.7": (None, None)})  # never forgets a verdict
        store.upsert_watch("gone", package="old")
        store.save_check("gone", {"0.1": ("bad", 2)})
        store.save_check("gone", {"0.2": ("good", 3)}, forget=True)  # a new baseline
        assert list(store.watch_releases("gone")) == ["0.2"]
        assert store.watch_releases("w")["1.5"]["verdict"] == "good" and set(store.watch_releases("w")) == {
            "1.5", "1.6", "1.7"}
        rows = store.list_watches()
    entries = status([SPEC], rows, t0)
    assert [(e["name"], e["configured"]) for e in entries] == [("w", True), ("gone", False)]
    w = entries[0]
    assert w["failures"] == 1 and w["last_error"] == "HTTP 503" and w["due_in_s"] == 12 * HOUR
    assert [f["version"] for f in w["open_findings"]] == ["1.6"]
    row = dict(zip(COLUMNS, cells(w)))
    assert row["last check"] == "2026-01-01 00:00 UTC" and row["next check"].startswith("in 12h00m (")
    assert row["last error"] == "1 failed check(s): HTTP 503" and row["open findings"] == "regression 1.6 (run 3)"
    assert cells(entries[1])[0] == "gone (not in config)" and cells(entries[1])[3] == "not configured"


def test_a_watch_stored_before_the_release_set_has_seen_everything_up_to_last_seen() -> None:
    row = {"last_seen": "1.8", "state": {"known": {"version": "1.8", "verdict": "bad"}}}
    assert legacy_seen(["1.2", "1.8", "1.10", "2.0"], row) == {"1.2": None, "1.8": "bad"}
    assert legacy_seen(["1.2"], None) == {} and legacy_seen(["1.2"], {"last_seen": None}) == {}
