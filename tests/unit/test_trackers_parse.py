"""Pure parts of the tracker layer: issue references, markers, error lines, findings."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from envbisect.errors import ConfigError, TrackerError
from envbisect.findings import finding_for_run, marker, marker_key, safe_key
from envbisect.trackers import (
    GitHub,
    IssueNotFound,
    IssueRef,
    RateLimited,
    TokenMissing,
    TrackerAuthFailed,
    TrackerUnreachable,
    error_for,
    parse_issue,
    reset_time,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("octo/demo#7", IssueRef("octo", "demo", 7)),
    ("  my.org/some-repo_2#123 ", IssueRef("my.org", "some-repo_2", 123)),
    ("https://github.com/octo/demo/issues/7", IssueRef("octo", "demo", 7)),
    ("https://github.com/octo/demo/pull/9/", IssueRef("octo", "demo", 9)),
    ("https://ghe.example.com/team/proj/issues/42", IssueRef("team", "proj", 42)),
])
def test_parse_issue_accepts_short_form_and_urls(text, expected):
    assert parse_issue(text) == expected
    assert str(parse_issue(text)) == f"{expected.owner}/{expected.repo}#{expected.number}"


@pytest.mark.parametrize("text", ["octo/demo", "octo#7", "octo/demo#x", "demo#7", "https://github.com/octo/demo",
                                  "https://github.com/octo/demo/issues/", "octo/demo/issues/7", ""])
def test_parse_issue_rejects_other_forms_with_a_fix(text):
    with pytest.raises(ConfigError, match="owner/repo#N"):
        parse_issue(text)


def test_marker_round_trips_and_is_found_inside_a_body():
    key = "regression/planted==1.6/recipe"
    body = f"intro\n{marker(key)}\n**text**"
    assert marker_key(body) == key
    assert marker_key("no marker here") is None and marker_key(None) is None
    assert marker_key("<!-- envbisect:finding  -->") is None


def test_safe_key_cannot_close_the_html_comment():
    key = safe_key("regression", "weird pkg", "1.0--rc>x", None, "")
    assert "--" not in key and ">" not in key and " " not in key
    assert key == "regression/weird_pkg/1.0-rc_x"
    assert marker_key(marker(key)) == key


def test_rate_limit_reset_time_from_headers():
    assert reset_time({"X-RateLimit-Reset": "1900000000"}) == "2030-03-17 17:46:40 UTC"
    assert reset_time({"Retry-After": "60"}, NOW) == "2025-01-02 03:05:05 UTC"
    assert reset_time({"X-RateLimit-Reset": "soon"}) == "an unknown time"
    assert reset_time({}) == "an unknown time"


@pytest.mark.parametrize("status, headers, cls, needle", [
    (401, {}, TrackerAuthFailed, "HTTP 401"),
    (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1900000000"}, RateLimited, "2030-03-17 17:46:40 UTC"),
    (403, {"Retry-After": "30"}, RateLimited, "2025-01-02 03:04:35 UTC"),
    (429, {}, RateLimited, "an unknown time"),
    (403, {"X-RateLimit-Remaining": "12"}, TrackerAuthFailed, "permission to write issues"),
    (404, {}, IssueNotFound, "no such issue"),
    (502, {}, TrackerUnreachable, "HTTP 502"),
    (422, {}, TrackerError, "HTTP 422"),
])
def test_error_for_each_status_is_one_actionable_line(status, headers, cls, needle):
    err = error_for(status, headers, "commenting on octo/demo#7", NOW)
    assert type(err) is cls
    assert needle in str(err) and "commenting on octo/demo#7" in str(err)
    assert "\n" not in str(err) and ";" in str(err), "one line naming the problem and the fix"
    assert err.exit_code == 7  # the issue-tracker class of exit codes


def test_token_is_read_at_use_time_and_only_put_in_the_header():
    environ: dict[str, str] = {}
    client = GitHub("http://127.0.0.1:9", environ=environ)
    with pytest.raises(TokenMissing, match="GITHUB_TOKEN is not set"):
        client._auth()
    environ["GITHUB_TOKEN"] = "t0ken"
    assert client._auth() == {"Authorization": "Bearer t0ken"}
    assert "Authorization" not in client._http.headers, "the token must not be kept on the session"
    environ["GITHUB_TOKEN"] = "rotated"
    assert client._auth() == {"Authorization": "Bearer rotated"}
    client.close()


def test_api_url_comes_from_the_environment_by_default():
    assert GitHub(environ={}).api_url == "https://api.github.com"
    assert GitHub(environ={"GITHUB_API_URL": "https://ghe.example.com/api/v3/"}).api_url == \
        "https://ghe.example.com/api/v3"


def _run(result: dict, kind: str = "bisect") -> dict:
    return {"id": 4, "kind": kind, "status": "done", "recipe_path": "/x/recipes/fused.py", "recipe_hash": "ab" * 32,
            "package": "planted", "result": result}


def test_finding_for_a_regression_run():
    result = {"status": "found", "package": "planted", "last_good": "1.5", "first_bad": "1.6",
              "recipe": "/x/recipes/fused.py", "index": {"index_url": "https://u:pw@idx.example/simple"}}
    finding = finding_for_run(_run(result), [])
    assert finding.conclusive and finding.version == "1.6" and finding.kind.value == "regression"
    assert finding.key == "regression/planted==1.6/fused"
    assert finding.body.startswith(marker(finding.key) + "\n**envbisect: regression in `planted` 1.6**")
    assert "first bad release of planted: 1.6 (last good: 1.5)" in finding.body
    assert len(finding.body_hash) == 64


def test_finding_for_a_fix_run_and_an_inconclusive_one():
    fix = finding_for_run(_run({"status": "found", "package": "planted", "find_fix": True, "last_bad": "2.0",
                                "first_good": "2.1", "recipe": "fused.py"}), [])
    assert fix.key == "fix/planted==2.1/fused" and "fixed in `planted` 2.1" in fix.body
    vague = finding_for_run(_run({"status": "inconclusive", "package": "planted", "last_good": "1.2",
                                  "first_bad": "1.8", "untestable_between": ["1.5"]}), [])
    assert not vague.conclusive
    assert vague.key == "regression/planted/inconclusive-1.2-1.8/fused"


def test_only_bisections_become_findings():
    with pytest.raises(ConfigError, match="only finished bisections"):
        finding_for_run(_run({"status": "good"}, kind="check"), [])
    with pytest.raises(ConfigError, match="only finished bisections"):
        finding_for_run(_run(None), [])
