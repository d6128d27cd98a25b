"""Deriving upstream change ranges (pure: envbisect.sourcerange) and attaching them to
results (envbisect.upstream) from stored probe rows, including date-mode results.
No token is given, so nothing is looked up (envbisect.sourcecheck does nothing)."""

from __future__ import annotations

import pytest

from envbisect import sourcerange, upstream
from envbisect.sourcerange import derive, repository, tag_prefix

SHA1, SHA2 = "a" * 40, "b" * 40


def src(**dists: dict) -> dict:
    return {"dists": dists}


@pytest.mark.parametrize("urls, repo", [
    ({"Source": "https://github.com/pypa/packaging"}, "https://github.com/pypa/packaging"),
    ({"Home-page": "https://github.com/pypa/packaging/"}, "https://github.com/pypa/packaging"),
    ({"source code": "git+https://github.com/o/r.git"}, "https://github.com/o/r"),
    ({"Homepage": "https://github.com/o/home", "Repository": "https://github.com/o/repo"}, "https://github.com/o/repo"),
    ({"Issue Tracker": "https://github.com/pytorch/pytorch/issues"}, "https://github.com/pytorch/pytorch"),
    # tensorflow(-cpu) 2.21.0's own metadata: the repository is only in Download-URL.
    ({"Home-page": "https://www.tensorflow.org/", "Download-URL": "https://github.com/tensorflow/tensorflow/tags"},
     "https://github.com/tensorflow/tensorflow"),
    ({"Funding": "https://github.com/sponsors/x", "Documentation": "https://github.com/o/r"}, None),
    ({"Homepage": "https://github.com/sponsors/x"}, None),
    ({"Source": "https://gitlab.com/o/r"}, None),
    ({}, None),
])
def test_the_repository_comes_from_metadata_only(urls, repo) -> None:
    assert repository(urls) == repo


@pytest.mark.parametrize("version, urls, prefix", [
    ("2.16.1", {}, "v"),
    ("22.0", {}, ""),
    ("2.16.0rc1", {}, "v"),
    ("22.0", {"Release notes": "https://github.com/o/r/releases/tag/v22.0"}, "v"),
    ("2.16.1", {"Changelog": "https://github.com/o/r/tree/2.16.1/CHANGES.md"}, ""),
])
def test_tag_style_follows_the_evidence_then_the_version_shape(version, urls, prefix) -> None:
    assert tag_prefix(version, urls) == prefix


def test_recorded_revisions_give_a_commit_range() -> None:
    info = {"urls": {"Repository": "https://github.com/pytorch/pytorch"}}
    r = derive("torch", "2.6.0.dev20241014+cpu", "2.6.0.dev20241015+cpu",
               src(torch=dict(info, revision=SHA1)), src(torch=dict(info, revision=SHA2)))
    assert (r["kind"], r["from"], r["to"]) == ("commits", SHA1, SHA2)
    assert r["url"] == f"https://github.com/pytorch/pytorch/compare/{SHA1}...{SHA2}"
    assert r["reason"] is None and r["confirmed"] is None  # exact as recorded; never looked up


def test_releases_without_revisions_give_an_unconfirmed_tag_range_and_the_changelog() -> None:
    old = src(packaging={"urls": {"Home-page": "https://github.com/pypa/packaging"}})
    new = src(packaging={"urls": {"Source": "https://github.com/pypa/packaging",
                                  "Changelog": "https://packaging.pypa.io/en/latest/changelog/"}})
    r = derive("packaging", "21.3", "22.0", old, new)
    assert r["url"] == "https://github.com/pypa/packaging/compare/21.3...22.0"
    assert (r["kind"], r["confirmed"]) == ("tags", False)
    assert r["changelog"] == "https://packaging.pypa.io/en/latest/changelog/"
    assert sourcerange.describe(r).endswith("(release tags, unconfirmed)")


@pytest.mark.parametrize("url", [
    "https://x.example/changes) [claim your prize](https://evil.example",  # a second Markdown link
    "https://x.example/\x1b]52;c;ZXZpbA==\x07",                              # a terminal escape
    "javascript:alert(1)", "https://x.example/a b",
])
def test_a_changelog_url_that_is_not_plain_is_left_out(url: str) -> None:
    new = src(x={"urls": {"Source": "https://github.com/o/x", "Changelog": url}})
    assert derive("x", "1.0", "1.1", src(x={}), new)["changelog"] is None
    assert sourcerange.changelog({"Release notes": "https://x.example/notes?v=1.1#top"}) == \
        "https://x.example/notes?v=1.1#top"


@pytest.mark.parametrize("old_v, new_v, old, new, reason", [
    ("1.0", "1.1", src(x={"version": "1.0"}), src(x={"version": "1.1"}), "x's metadata names no GitHub repository"),
    ("1.0", "1.1", {"dists": {}, "error": "reading the sources timed out after 60 s"}, src(),
     "reading the sources failed (reading the sources timed out after 60 s)"),
    ("1.0", "1.1", None, src(), "recorded without their sources"),
    ("1.0.dev1", "1.0.dev2", src(x={"urls": {"Source": "https://github.com/o/x"}}),
     src(x={"urls": {"Source": "https://github.com/o/x"}}), "x 1.0.dev1 and 1.0.dev2 are dev or local builds"),
    ("1.0", None, src(), src(), "only the older boundary environment has x 1.0"),
])
def test_nothing_known_says_why_and_gives_no_link(old_v, new_v, old, new, reason) -> None:
    r = derive("x", old_v, new_v, old, new)
    assert r["url"] is None and reason in r["reason"]
    assert sourcerange.describe(r).startswith("unknown (")


def _row(version: str, resolved: dict, source: dict | None) -> dict:
    return {"version": version, "resolved": resolved, "source": source}



def _dist(name: str, revision: str | None = None) -> dict:
    info = {"urls": {"Source": f"https://github.com/o/{name}"}}
    return dict(info, revision=revision) if revision else info


def test_a_bisect_result_lists_the_package_first_then_every_other_that_moved() -> None:
    rows = [_row("1.0", {"Pkg": "1.0", "dep": "1.0", "same": "3"}, src(pkg=_dist("pkg", SHA1), dep=_dist("dep"))),
            _row("1.1", {"Pkg": "1.1", "dep": "1.2", "same": "3"}, src(pkg=_dist("pkg", SHA2), dep=_dist("dep")))]
    out = upstream.source_ranges({"last_good": "1.0", "first_bad": "1.1"}, rows, primary="pkg", environ={})
    assert [r["package"] for r in out["source_ranges"]] == ["pkg", "dep"]
    assert out["source_range"]["kind"] == "commits"
    assert out["source_ranges"][1]["url"] == "https://github.com/o/dep/compare/1.0...1.2"
    lines = sourcerange.summary_lines(out)
    assert lines[0] == f"upstream pkg: https://github.com/o/pkg/compare/{SHA1}...{SHA2} (commits the builds record)"


def test_find_fix_ranges_run_from_last_bad_to_first_good() -> None:
    rows = [_row("2.0", {"p": "2.0"}, src(p=_dist("p"))), _row("2.1", {"p": "2.1"}, src(p=_dist("p")))]
    out = upstream.source_ranges({"find_fix": True, "last_bad": "2.0", "first_good": "2.1"}, rows, primary="p",
                                 environ={})
    assert out["source_range"]["url"] == "https://github.com/o/p/compare/2.0...2.1"


def test_no_boundary_no_range_and_the_reason() -> None:
    out = upstream.source_ranges({"last_good": None, "first_bad": "1.0"}, [], primary="p", environ={})
    assert out["source_range"] is None and "no last good / first bad pair" in out["source_range_reason"]
    assert sourcerange.summary_lines(out) == ["upstream: unknown (the search named no last good / first bad pair)"]


def test_date_mode_gives_a_range_per_moved_package_and_picks_the_culprit() -> None:
    good = _row("2024-01-02", {"a": "1.0", "b": "2.0"}, src(a=_dist("a"), b=_dist("b")))
    bad = _row("2024-01-09", {"a": "1.1", "b": "2.1"}, src(a=_dist("a"), b=_dist("b")))
    result = {"kind": "date", "last_good": good["version"], "first_bad": bad["version"]}
    out = upstream.source_ranges(result, [good, bad], environ={})
    assert [r["package"] for r in out["source_ranges"]] == ["a", "b"]
    assert out["source_range"] is None and "2 packages moved" in out["source_range_reason"]
    result["culprit"] = {"culprits": [{"package": "B"}]}
    out = upstream.source_ranges(result, [good, bad], environ={})
    assert out["source_range"]["url"] == "https://github.com/o/b/compare/2.0...2.1"
    md = sourcerange.markdown_lines(out)
    assert md[:3] == ["", "#### Upstream changes", ""] and md[3].startswith("- **a:** https://github.com/o/a/")
