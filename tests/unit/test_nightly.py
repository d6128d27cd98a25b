"""Nightly channel rules (envbisect.nightly): dates, variants, one build per night,
windows, index order, and how nightlies are shown. Pure: canned candidate lists."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from packaging.version import Version

from envbisect import report
from envbisect.errors import ConfigError, NoCandidates
from envbisect.index import IndexConfig
from envbisect.redact import redact, strip_credentials
from envbisect.nightly import (
    Window,
    arrange,
    build_date,
    default_variant,
    display,
    nights_between,
    variant_of,
    window_between,
    with_nightly_index,
)
from envbisect.recipes import parse_recipe_text
from envbisect.requests_model import requirements_for
from envbisect.versions import Candidate, Reason


def cand(version: str) -> Candidate:
    return Candidate(Version(version), None, (), needs_build=False)


def versions(cands) -> list[str]:
    return [str(c.version) for c in cands]


@pytest.mark.parametrize("text, expected", [
    ("2.12.0.dev20260315+cu126", date(2026, 3, 15)),
    ("2.19.0.dev20250101", date(2025, 1, 1)),
    ("3.7.0.dev2024112503", date(2024, 11, 25)),  # keras-nightly: YYYYMMDDHH
    ("1.0.dev3", None), ("1.0.dev20261399", None), ("2.0", None), ("not a version", None),
])
def test_build_date(text, expected):
    assert build_date(text) == expected


def test_variant_and_display():
    assert variant_of("2.12.0.dev20260315+cu126") == "cu126" and variant_of("2.1") is None
    assert display("2.12.0.dev20260315+cpu") == "nightly 2026-03-15 (2.12.0.dev20260315+cpu)"
    assert display("1.6") == "1.6" and display(None) == ""


def test_default_variant_follows_the_host():
    assert default_variant({"cpu", "cu118", "cu126"}, cuda=False) == ("cpu", "host default: no CUDA driver found")
    assert default_variant({"cpu", "cu118", "cu126"}, cuda=True)[0] == "cu126"
    assert default_variant({"rocm6.2"}, cuda=False)[0] == "rocm6.2"
    with pytest.raises(ConfigError, match="pass --variant"):
        default_variant({"rocm6.2", "xpu"}, cuda=False)


CHANNEL = [f"2.12.0.dev202603{d:02d}+{v}" for d in (1, 2, 4, 5) for v in ("cpu", "cu126")]


def test_arrange_one_variant_one_build_per_night_by_date():
    cands = [cand(v) for v in CHANNEL] + [cand("2.13.0.dev20260305+cpu")]
    kept, excluded, channel = arrange(cands, [], package="torch", cuda=False)
    assert versions(kept) == ["2.12.0.dev20260301+cpu", "2.12.0.dev20260302+cpu", "2.12.0.dev20260304+cpu",
                              "2.13.0.dev20260305+cpu"]
    reasons = {e.version: e.reason for e in excluded}
    assert reasons["2.12.0.dev20260305+cpu"] is Reason.SAME_NIGHT
    assert all(reasons[v] is Reason.OTHER_VARIANT for v in CHANNEL if v.endswith("cu126"))
    assert channel.variant == "cpu" and channel.missing_nights == (date(2026, 3, 3),)
    assert channel.first == date(2026, 3, 1) and channel.last == date(2026, 3, 5)
    assert "1 night(s) without a build" in channel.describe("torch")


def test_arrange_orders_by_date_not_version():
    # A branch cut: the older base version built later must come later.
    kept, _, _ = arrange([cand("2.0.0.dev20260310"), cand("1.9.0.dev20260312")], [], package="p")
    assert versions(kept) == ["2.0.0.dev20260310", "1.9.0.dev20260312"]


def test_arrange_leaves_release_lists_alone_and_drops_releases_when_asked():
    mixed = [cand("1.0"), cand("1.1.dev20260301")]
    assert arrange(mixed, [], package="p") == (mixed, [], None)
    kept, excluded, channel = arrange(mixed, [], package="p", nightly_only=True)
    assert versions(kept) == ["1.1.dev20260301"] and excluded == [] and channel.variant is None
    with pytest.raises(NoCandidates, match="no nightly builds"):
        arrange([cand("1.0")], [], package="p", nightly_only=True)


def test_arrange_variant_flag_and_unknown_variant():
    kept, _, channel = arrange([cand(v) for v in CHANNEL], [], package="torch", variant="cu126")
    assert {variant_of(c.version) for c in kept} == {"cu126"} and channel.variant_source == "--variant"
    with pytest.raises(ConfigError, match="available: cpu, cu126"):
        arrange([cand(v) for v in CHANNEL], [], package="torch", variant="rocm6")


def test_window_by_date_then_by_version():
    by_date = Window(date(2026, 3, 2), date(2026, 3, 4), "2.11", "2.12")
    kept, _, channel = arrange([cand(v) for v in CHANNEL], [], package="t", window=by_date, cuda=False)
    assert versions(kept) == ["2.12.0.dev20260302+cpu", "2.12.0.dev20260304+cpu"]
    assert channel.as_dict()["window"] == "2026-03-02 .. 2026-03-04"
    by_version = Window(above="2.11", below="2.12")
    assert by_version.admits(Version("2.12.0.dev20260301+cpu")) and not by_version.admits(Version("2.12.1.dev20260301"))
    with pytest.raises(NoCandidates, match="2026-03-02 .. 2026-03-04"):
        arrange([cand("2.12.0.dev20260310")], [], package="t", window=by_date)


def test_window_between_release_boundaries():
    up = lambda d: datetime(2026, 3, d, 12, tzinfo=timezone.utc).isoformat()  # noqa: E731
    result = {"last_good": "1.1", "first_bad": "1.2",
              "probes": [{"version": "1.1", "upload_time": up(1)}, {"version": "1.2", "upload_time": up(20)}]}
    assert window_between(result) == Window(date(2026, 3, 1), date(2026, 3, 20), "1.1", "1.2")
    fix = {"find_fix": True, "last_bad": "1.1", "first_good": "1.2", "probes": [{"version": "1.1"}]}
    assert window_between(fix) == Window(None, None, "1.1", "1.2")


def test_nightly_index_goes_first_among_the_extras():
    config = IndexConfig("https://pypi.example/simple", ("https://extra.example/simple",))
    out = with_nightly_index(config, "https://u:t@nightly.example/whl/nightly/cpu/")
    assert out.index_url == config.index_url
    assert out.extra_index_urls == ("https://u:t@nightly.example/whl/nightly/cpu", "https://extra.example/simple")
    assert out.installer_env()["UV_EXTRA_INDEX_URL"].split()[0] == "https://u:t@nightly.example/whl/nightly/cpu"
    assert with_nightly_index(config, None) is config
    assert strip_credentials(redact("https://u:t@nightly.example/x")) == "https://nightly.example/x"


def test_nights_between_and_report_labels():
    channel = {"variant": "cpu", "variant_source": "--variant", "builds": 9, "first": "2026-03-01",
               "last": "2026-03-12", "missing_nights": ["2026-03-03", "2026-03-08"], "window": None}
    assert nights_between(channel, "1.0.dev20260307", "1.0.dev20260309") == ["2026-03-08"]
    result = {"status": "found", "package": "torch", "nightly": channel, "last_good": "1.0.dev20260307+cpu",
              "first_bad": "1.0.dev20260309+cpu", "probes": [], "run_id": 4}
    lines = report.text_summary(result)
    assert lines[0] == ("first bad nightly of torch: nightly 2026-03-09 (1.0.dev20260309+cpu) "
                        "(last good: nightly 2026-03-07 (1.0.dev20260307+cpu))")
    assert any("no build on 2026-03-08" in line for line in lines)
    two = {"status": "found", "package": "torch", "last_good": "1.1", "first_bad": "1.2", "probes": [],
           "nightly_phase": dict(result, run_id=5, reproduce=["bisect run r.py"])}
    text = "\n".join(report.text_summary(two))
    assert "nightly phase (run 5): first bad nightly of torch: nightly 2026-03-09" in text
    assert "reproduce: bisect run r.py" in text
    skipped = dict(two, nightly_phase={"status": "not-run", "reason": "no builds"})
    assert "nightly phase: not run (no builds)" in "\n".join(report.text_summary(skipped))


def test_recipe_nightly_settings_and_replaced_dependency():
    text = ('# /// script\n# dependencies = ["tensorflow", "numpy"]\n# [tool.envbisect]\n'
            '# package = "tensorflow"\n# nightly-package = "tf-nightly"\n'
            '# nightly-index = "https://download.example/whl/nightly/cpu"\n# variant = "cpu"\n# ///\n')
    recipe = parse_recipe_text(text, Path("r.py"))
    assert (recipe.settings.nightly_package, recipe.settings.variant) == ("tf-nightly", "cpu")
    assert recipe.settings.nightly_index.endswith("/nightly/cpu")
    reqs = requirements_for(recipe, [], "tf-nightly", "2.19.0.dev20250101", drop=("tensorflow",))
    assert reqs == ["numpy", "tf-nightly==2.19.0.dev20250101"]
