"""Redaction of headers and query strings, the re-exec placeholder, token sources, loopback."""

from __future__ import annotations

import pytest

from envbisect import reexec, secrets
from envbisect.redact import is_secret, redact
from envbisect.trackers import is_loopback


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer ghp_abc123", "Authorization: Bearer ***"),
        ("authorization: token abc", "authorization: token ***"),
        ("Proxy-Authorization: Basic dXNlcjpw more", "Proxy-Authorization: Basic *** more"),
        ('{"Authorization": "Bearer x1"}', '{"Authorization": "Bearer ***"}'),
        ("https://host/x?token=abc123&page=2", "https://host/x?token=***&page=2"),
        ("GET /a?access_token=s3&x=1", "GET /a?access_token=***&x=1"),
        ("--password=hunter2 GITHUB_TOKEN=ghp_1", "--password=*** GITHUB_TOKEN=***"),
        ("http://u:p@h/ and Authorization: Bearer t", "http://***@h/ and Authorization: Bearer ***"),
        ("max_tokens=5 check the Authorization header", "max_tokens=5 check the Authorization header"),
    ],
)
def test_redact_headers_and_parameters(text, expected):
    assert redact(text) == expected
    assert redact(redact(text)) == expected


def test_secret_rule_and_argv_placeholder():
    assert is_secret("GITHUB_TOKEN", "x") and is_secret("ACME_API_KEY", "x")
    assert is_secret("MIRROR", "https://u:p@host/simple") and not is_secret("HOME", "/root")
    assert reexec.placeholder("http://alice:pw@127.0.0.1:8080/simple") == "http://***@127.0.0.1:8080/simple"
    assert reexec.placeholder("--index-url=https://tok@h/s") == "--index-url=https://***@h/s"


def test_token_sources_in_order(tmp_path):
    file, creds = tmp_path / "t", tmp_path / "creds"
    file.write_text("from-file\n")
    creds.mkdir()
    (creds / "github_token").write_text("from-systemd")
    assert secrets.read_token("GITHUB_TOKEN", {"GITHUB_TOKEN": " env ", "GITHUB_TOKEN_FILE": str(file)}) == "env"
    assert secrets.read_token("GITHUB_TOKEN", {"GITHUB_TOKEN_FILE": str(file), "CREDENTIALS_DIRECTORY": str(creds)}) \
        == "from-file"
    assert secrets.read_token("GITHUB_TOKEN", {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-systemd"
    assert secrets.read_token("GITHUB_TOKEN", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == ""
    with pytest.raises(secrets.TokenFileError, match="cannot read the token file"):
        secrets.read_token("GITHUB_TOKEN", {"GITHUB_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                               ("::1", True), ("[::1]", True), ("10.0.0.1", False),
                                               ("api.github.com", False), (None, False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
