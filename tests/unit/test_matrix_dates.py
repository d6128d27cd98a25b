"""Date bisection pieces that need no subprocess: --since/--until parsing, the instants
built from release upload times, the --by flag rules, and the timeline rendering."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from envbisect.bydate import Release, date_mode, instants, parse_when
from envbisect.plan import FAR_FUTURE, as_of, keep_visible
from envbisect.errors import ConfigError
from envbisect.report import headline, markdown, text_summary


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_parse_when_dates_and_times():
    assert parse_when("2024-08-01", "--since") == utc(2024, 8, 1)
    assert parse_when("2024-08-01", "--until", end_of_day=True) == utc(2024, 8, 2)
    assert parse_when("2024-08-01T12:30:00Z", "--until", end_of_day=True) == utc(2024, 8, 1, 12, 30)
    assert parse_when("2024-08-01T12:30:00", "--since") == utc(2024, 8, 1, 12, 30)  # naive = UTC
    assert parse_when(None, "--since") is None
    with pytest.raises(ConfigError, match="--since 'last tuesday' is not a date; use YYYY-MM-DD"):
        parse_when("last tuesday", "--since")


RELEASES = [
    Release("core", "1.0", utc(2024, 1, 5, 10)),
    Release("plugin", "2.1", utc(2024, 8, 1, 9)),
    Release("drift", "1.3", utc(2024, 8, 1, 12)),
    Release("core", "2.2", utc(2024, 8, 1, 23, 59)),
    Release("drift", "1.4", utc(2024, 9, 10)),
]


def test_a_release_day_is_one_instant_resolved_as_of_its_end():
    days = instants(RELEASES)
    assert [d.label for d in days] == ["2024-01-05", "2024-08-01", "2024-09-10"]
    day = days[1]
    assert day.cutoff == utc(2024, 8, 2)
    assert [(r.package, r.version) for r in day.releases] == [("plugin", "2.1"), ("drift", "1.3"), ("core", "2.2")]
    assert day.to_dict()["cutoff"] == "2024-08-02T00:00:00Z"


def test_since_adds_the_start_state_and_until_includes_its_day():
    days = instants(RELEASES, since=utc(2024, 2, 1), until=utc(2024, 8, 2))
    assert [d.label for d in days] == ["2024-02-01T00:00:00Z", "2024-08-01"]
    assert days[0].releases == () and days[0].cutoff == utc(2024, 2, 1)
    assert instants(RELEASES, since=utc(2024, 10, 1)) == instants([], since=utc(2024, 10, 1))


def test_as_of_includes_the_upload_and_keep_visible_exempts_pins():
    assert as_of(utc(2024, 8, 1, 9)) == "2024-08-01T09:00:01Z"
    assert keep_visible(["Plugin_X", "core", "core"]) == (f"core={FAR_FUTURE}", f"plugin-x={FAR_FUTURE}")


def _mode(by="date", **kw):
    args = dict(since=None, until=None, axis=[], deps="latest", package=None, good=None, bad=None, find_fix=False)
    args.update(kw)
    return date_mode(by, **args)


def test_by_flag_rules():
    assert _mode() is True and _mode("version") is False
    with pytest.raises(ConfigError, match="--by 'day' is not a mode"):
        _mode("day")
    with pytest.raises(ConfigError, match="apply to --by date"):
        _mode("version", since="2024-01-01")
    with pytest.raises(ConfigError, match="--package, --good apply to --by version"):
        _mode(package="plugin", good="1.0")
    with pytest.raises(ConfigError, match="--deps apply to --by version"):
        _mode(deps="as-of-release")


DATE_RESULT = {
    "run_id": 3, "kind": "date", "status": "found", "last_good": "2024-06-01", "first_bad": "2024-08-01",
    "packages": ["core", "plugin", "drift"], "since": "2024-02-01", "until": None, "candidates": 2,
    "timeline": [{"instant": "2024-06-01", "cutoff": "2024-06-02T00:00:00Z", "outcome": "good",
                  "releases": [{"package": "core", "version": "2.1"}]},
                 {"instant": "2024-08-01", "cutoff": "2024-08-02T00:00:00Z", "outcome": "bad",
                  "releases": [{"package": "plugin", "version": "2.1"}, {"package": "drift", "version": "1.3"}]}],
    "culprits": [{"package": "plugin", "from": "2.0", "to": "2.1"}],
    "culprit": {"finding": "single", "summary": "culprit: plugin 2.0 → 2.1",
                "culprits": [{"package": "plugin", "from": "2.0", "to": "2.1"}],
                "changes": [{"package": "drift", "from": "1.2", "to": "1.3"},
                            {"package": "plugin", "from": "2.0", "to": "2.1"}],
                "trials": [{"changes": [{"package": "drift", "from": "1.2", "to": "1.3"}], "verdict": "good"}]},
    "reproduce": ["bisect run r.py --by date"],
}


def test_date_run_renders_timeline_and_culprit():
    assert headline(DATE_RESULT) == "first bad day: 2024-08-01 (last good: 2024-06-01); culprit: plugin 2.0 → 2.1"
    text = "\n".join(text_summary(DATE_RESULT))
    assert "2024-08-01" in text and "plugin 2.1, drift 1.3" in text and "changed: drift 1.2 -> 1.3" in text
    md = markdown({"id": 3, "kind": "date", "recipe_path": "r.py", "recipe_hash": "0" * 64, "result": DATE_RESULT}, [])
    assert "| 2024-08-01 | plugin 2.1, drift 1.3 | bad |" in md
    assert "#### Culprit" in md and "| plugin | 2.0 | 2.1 | **yes** |" in md and "| drift | 1.2 | 1.3 |  |" in md
    assert "- drift 1.2 → 1.3: good" in md
