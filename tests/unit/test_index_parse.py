"""Parsing index pages, index settings and redaction (pure: no sockets, no subprocess).

The payloads are written here, modelled on real PEP 691 JSON and PEP 503 HTML pages.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from packaging.tags import Tag
from packaging.version import Version

from envbisect.errors import IndexUnreachable
from envbisect.index import (
    DEFAULT_INDEX_URL,
    DistKind,
    IndexClient,
    IndexConfig,
    dist_file,
    list_directory,
    parse_page,
    parse_simple_html,
    parse_simple_json,
    parse_timestamp,
    raw_version,
    redact,
)

PAGE = "https://files.example.org/simple/demo-pkg/"
INDEX = "https://files.example.org/simple"
SHA = "a" * 64

JSON_PAGE = {
    "meta": {"api-version": "1.1"},
    "name": "demo-pkg",
    "versions": ["1.0", "1.1", "2.0"],
    "files": [
        {
            "filename": "demo_pkg-1.0-py3-none-any.whl",
            "url": "https://cdn.example.org/packages/aa/demo_pkg-1.0-py3-none-any.whl",
            "hashes": {"sha256": SHA},
            "requires-python": ">=3.8",
            "yanked": False,
            "upload-time": "2021-03-04T05:06:07.123456Z",
        },
        {
            "filename": "demo-pkg-1.0.tar.gz",
            "url": "../../packages/demo-pkg-1.0.tar.gz",
            "hashes": {},
            "yanked": True,
        },
        {
            "filename": "demo_pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "url": "/packages/demo_pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "hashes": {"sha256": SHA},
            "requires-python": "",
            "yanked": "broken build, use 1.2",
        },
        {"filename": "demo_pkg-2.0.tar.gz", "url": "demo_pkg-2.0.tar.gz", "hashes": {}},
        {"filename": "demo-pkg-2.0.exe", "url": "demo-pkg-2.0.exe", "hashes": {}},
        {"filename": "demo_pkg-2.0.tar.gz.asc", "url": "demo_pkg-2.0.tar.gz.asc", "hashes": {}},
    ],
}

HTML_PAGE = f"""<!DOCTYPE html>
<html>
  <head><meta name="pypi:repository-version" content="1.1"><title>Links for demo-pkg</title></head>
  <body>
    <h1>Links for demo-pkg</h1>
    <a href="https://cdn.example.org/packages/aa/demo_pkg-1.0-py3-none-any.whl#sha256={SHA}" data-requires-python="&gt;=3.8" data-upload-time="2021-03-04T05:06:07.123456Z">demo_pkg-1.0-py3-none-any.whl</a><br />
    <a href="../../packages/demo-pkg-1.0.tar.gz" data-yanked>demo-pkg-1.0.tar.gz</a><br />
    <a href="/packages/demo_pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl#sha256={SHA}" data-yanked="broken build, use 1.2">demo_pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl</a><br />
    <a href="demo_pkg-2.0.tar.gz">demo_pkg-2.0.tar.gz</a><br />
    <a href="demo-pkg-2.0.exe">demo-pkg-2.0.exe</a><br />
    <a href="demo_pkg-2.0.tar.gz.asc">demo_pkg-2.0.tar.gz.asc</a><br />
    <a name="no-href">not a file</a>
  </body>
</html>
"""


def _by_name(files):
    return {f.filename: f for f in files}


@pytest.mark.parametrize("flavour", ["json", "html"])
def test_simple_page_fields(flavour):
    if flavour == "json":
        files = parse_simple_json(json.dumps(JSON_PAGE), page_url=PAGE, index_url=INDEX)
    else:
        files = parse_simple_html(HTML_PAGE, page_url=PAGE, index_url=INDEX)
    by_name = _by_name(files)
    # Non-distribution files (.exe, signatures) are ignored.
    assert sorted(by_name) == [
        "demo-pkg-1.0.tar.gz",
        "demo_pkg-1.0-py3-none-any.whl",
        "demo_pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo_pkg-2.0.tar.gz",
    ]
    wheel = by_name["demo_pkg-1.0-py3-none-any.whl"]
    assert wheel.kind is DistKind.WHEEL and wheel.kind == "wheel"
    assert wheel.project == "demo-pkg"
    assert wheel.version == Version("1.0")
    assert wheel.tags == frozenset({Tag("py3", "none", "any")})
    assert wheel.requires_python == ">=3.8"  # HTML: &gt; unescaped
    assert wheel.sha256 == SHA
    assert wheel.url == "https://cdn.example.org/packages/aa/demo_pkg-1.0-py3-none-any.whl"  # fragment stripped
    assert wheel.upload_time == datetime(2021, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)
    assert wheel.yanked is None
    assert wheel.index_url == INDEX

    sdist = by_name["demo-pkg-1.0.tar.gz"]
    assert sdist.kind == "sdist" and sdist.tags == frozenset()
    assert sdist.yanked == ""  # yanked without a reason
    assert sdist.url == "https://files.example.org/packages/demo-pkg-1.0.tar.gz"  # relative href resolved
    assert sdist.upload_time is None and sdist.sha256 is None and sdist.requires_python is None

    yanked = by_name["demo_pkg-1.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    assert yanked.yanked == "broken build, use 1.2"
    assert yanked.url.startswith("https://files.example.org/packages/demo_pkg-1.1-")
    assert Tag("cp311", "cp311", "manylinux2014_x86_64") in yanked.tags
    assert yanked.requires_python is None  # empty string means "not stated"

    assert by_name["demo_pkg-2.0.tar.gz"].url == PAGE + "demo_pkg-2.0.tar.gz"


def test_json_and_html_agree():
    from_json = parse_simple_json(json.dumps(JSON_PAGE), page_url=PAGE, index_url=INDEX)
    from_html = parse_simple_html(HTML_PAGE, page_url=PAGE, index_url=INDEX)
    # The HTML flavour has no upload time for the sdists either, so the records match.
    assert sorted(from_json, key=lambda f: f.filename) == sorted(from_html, key=lambda f: f.filename)


def test_parse_page_dispatches_on_content_type():
    body = json.dumps(JSON_PAGE).encode()
    files = parse_page(body, "application/vnd.pypi.simple.v1+json", page_url=PAGE, index_url=INDEX)
    assert len(files) == 4
    html = parse_page(HTML_PAGE.encode("latin-1"), "text/html; charset=ISO-8859-1", page_url=PAGE, index_url=INDEX)
    assert len(html) == 4
    legacy = parse_page(HTML_PAGE.encode(), "text/html; charset=no-such-codec", page_url=PAGE, index_url=INDEX)
    assert len(legacy) == 4


def test_html_base_href_and_encoded_filename():
    page = '<base href="https://mirror.example.org/files/"><a href="sub/demo%2Bpkg-1.0.zip">x</a>'
    [f] = parse_simple_html(page, page_url=PAGE, index_url=INDEX)
    assert f.url == "https://mirror.example.org/files/sub/demo%2Bpkg-1.0.zip"
    assert f.filename == "demo+pkg-1.0.zip"
    assert f.kind == "sdist" and f.version == Version("1.0")


def test_unparseable_versions_are_kept_without_version():
    wheel = dist_file("demo-1.0.x-py3-none-any.whl", "https://x/demo-1.0.x-py3-none-any.whl", index_url=INDEX)
    assert wheel is not None and wheel.version is None
    assert wheel.tags == frozenset({Tag("py3", "none", "any")})
    assert raw_version(wheel) == "1.0.x"
    sdist = dist_file("demo-0.1dev-r123.tar.gz", "https://x/demo-0.1dev-r123.tar.gz", index_url=INDEX)
    assert sdist is not None and sdist.version is None and raw_version(sdist) == "r123"
    assert dist_file("demo-1.0-py3.whl", "https://x/demo-1.0-py3.whl", index_url=INDEX) is None
    assert dist_file("demo-1.0.tar.bz2", "https://x/demo-1.0.tar.bz2", index_url=INDEX) is None


def test_the_index_text_that_is_shown_is_kept_printable():
    """A yanked reason, a Requires-Python and an unparseable filename come from the index
    and are shown by `bisect versions` and in reasons: no control character of theirs
    reaches a terminal or a comment."""
    page = {"meta": {"api-version": "1.1"}, "name": "demo", "files": [
        {"filename": "demo-1.0-py3-none-any.whl", "url": "https://x/demo-1.0-py3-none-any.whl", "hashes": {},
         "yanked": "use 1.1\x1b]52;c;ZXZpbA==\x07 now\u202e", "requires-python": ">=3.8\x1b[2J"},
        {"filename": "demo-1.0.x\x1b[2J-py3-none-any.whl", "url": "https://x/odd.whl", "hashes": {}}]}
    good, odd = parse_simple_json(json.dumps(page), page_url=PAGE, index_url=INDEX)
    assert (good.yanked, good.requires_python) == ("use 1.1 now\\u202e", ">=3.8")
    assert odd.version is None and odd.filename == "demo-1.0.x-py3-none-any.whl"


def test_parse_timestamp():
    assert parse_timestamp("2024-01-02T03:04:05+02:00") == datetime(2024, 1, 2, 1, 4, 5, tzinfo=timezone.utc)
    assert parse_timestamp("2024-01-02T03:04:05") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(None) is None


def test_list_directory(tmp_path):
    for name in ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "other-2.0.zip", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    files = list_directory(tmp_path, index_url=str(tmp_path))
    assert [f.filename for f in files] == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "other-2.0.zip"]
    assert files[0].url == (tmp_path / "demo-1.0-py3-none-any.whl").as_uri()


# ------------------------------------------------------------------- IndexConfig


def test_resolve_defaults():
    config = IndexConfig.resolve({})
    assert config == IndexConfig(DEFAULT_INDEX_URL, (), ())
    assert config.installer_env() == {"UV_INDEX_URL": DEFAULT_INDEX_URL}


def test_resolve_precedence():
    env = {
        "UV_INDEX_URL": "https://uv.example/simple",
        "PIP_INDEX_URL": "https://pip.example/simple",
        "UV_EXTRA_INDEX_URL": "https://e1.example/simple https://e2.example/simple/",
        "PIP_EXTRA_INDEX_URL": "https://pip-extra.example/simple",
        "UV_FIND_LINKS": "/wheels,https://links.example/flat.html",
        "PIP_FIND_LINKS": "/pip-wheels",
    }
    assert IndexConfig.resolve(env).index_url == "https://uv.example/simple"
    assert IndexConfig.resolve(env, index_url="https://arg.example/simple/").index_url == "https://arg.example/simple"
    assert IndexConfig.resolve({**env, "UV_DEFAULT_INDEX": "https://d.example/simple"}).index_url == (
        "https://d.example/simple"
    )
    pip_only = {k: v for k, v in env.items() if k.startswith("PIP_")}
    assert IndexConfig.resolve(pip_only).index_url == "https://pip.example/simple"
    assert IndexConfig.resolve({"UV_INDEX_URL": "", **pip_only}).index_url == "https://pip.example/simple"

    config = IndexConfig.resolve(env, extra_index_urls=["https://arg-extra.example/simple"], find_links=["/arg"])
    assert config.extra_index_urls == (
        "https://arg-extra.example/simple",
        "https://e1.example/simple",
        "https://e2.example/simple",
    )
    assert config.find_links == ("/arg", "/wheels", "https://links.example/flat.html")
    pip_config = IndexConfig.resolve(pip_only)
    assert pip_config.extra_index_urls == ("https://pip-extra.example/simple",)
    assert pip_config.find_links == ("/pip-wheels",)
    named = IndexConfig.resolve({"UV_INDEX": "torch=https://torch.example/whl/cpu https://plain.example/simple"})
    assert named.extra_index_urls == ("https://torch.example/whl/cpu", "https://plain.example/simple")


def test_installer_env_for_uv_and_pip(tmp_path):
    config = IndexConfig("https://a/simple", ("https://b/simple", "https://c/simple"), ("/w",))
    assert config.installer_env("uv") == {"UV_INDEX_URL": "https://a/simple",
                                          "UV_EXTRA_INDEX_URL": "https://b/simple https://c/simple",
                                          "UV_FIND_LINKS": "/w"}
    assert config.installer_env("pip") == {"PIP_INDEX_URL": "https://a/simple",
                                           "PIP_EXTRA_INDEX_URL": "https://b/simple https://c/simple",
                                           "PIP_FIND_LINKS": "/w"}
    # A location containing the list separator (uv: comma, pip: whitespace) is percent-encoded.
    odd = IndexConfig("https://a/simple", (), (str(tmp_path / "a,b c"), "https://h/x,y z"))
    assert odd.installer_env("uv")["UV_FIND_LINKS"].split(",") == [
        (tmp_path / "a,b c").as_uri(), "https://h/x%2Cy z"]
    assert odd.installer_env("pip")["PIP_FIND_LINKS"].split() == [
        (tmp_path / "a,b c").as_uri(), "https://h/x,y%20z"]


def test_redacted_config_has_no_secret():
    config = IndexConfig("https://user:s3cret@a/simple", ("https://tok@b/simple",), ("https://u:p@c/links",))
    out = json.dumps(config.redacted())
    assert "s3cret" not in out and "tok@" not in out and "u:p@" not in out
    assert config.redacted()["index_url"] == "https://***@a/simple"


# ------------------------------------------------------------------------ redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pass@host/simple", "https://***@host/simple"),
        ("https://__token__@host/simple/", "https://***@host/simple/"),
        ("see http://a:b@h1/x and https://c:d@h2:8080/y.", "see http://***@h1/x and https://***@h2:8080/y."),
        ("https://host/path@not-userinfo", "https://host/path@not-userinfo"),
        ("https://host?q=a@b", "https://host?q=a@b"),
        ("mail me: dev@example.org", "mail me: dev@example.org"),
        ("no urls here", "no urls here"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_offline_without_cache_says_so(tmp_path):
    # Offline mode never opens a socket: a page never cached is an actionable error.
    config = IndexConfig("https://user:hunter2@index.invalid/simple")
    with IndexClient(config, cache_dir=tmp_path, offline=True) as client:
        with pytest.raises(IndexUnreachable) as err:
            client.project_files("demo")
    assert "offline" in str(err.value) and "hunter2" not in str(err.value)
