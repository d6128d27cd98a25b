"""IndexClient against real HTTP on 127.0.0.1 (and one test against the public index).

A tiny scripted server lives in this file so each test controls exactly which status,
headers and body every request gets, and can count what the client sent.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from packaging.version import Version

from envbisect import __version__
from envbisect.errors import IndexUnreachable, UnknownPackage
from envbisect.index import SIMPLE_ACCEPT, DistKind, IndexClient, IndexConfig

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
SHA = "b" * 64
FILES = [
    ("demo-1.0-py3-none-any.whl", ">=3.8", False),
    ("demo-1.0.tar.gz", None, "bad sdist"),
    ("demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", None, False),
]


def json_page() -> bytes:
    files = [
        {"filename": n, "url": f"../../files/{n}", "hashes": {"sha256": SHA}, "requires-python": rp, "yanked": y}
        for n, rp, y in FILES
    ]
    return json.dumps({"meta": {"api-version": "1.0"}, "name": "demo", "files": files}).encode()


def html_page() -> bytes:
    anchors = []
    for name, rp, yanked in FILES:
        attrs = f' data-requires-python="{rp.replace(">", "&gt;")}"' if rp else ""
        attrs += f' data-yanked="{yanked}"' if yanked else ""
        anchors.append(f'<a href="../../files/{name}#sha256={SHA}"{attrs}>{name}</a><br/>')
    return f"<html><body>{''.join(anchors)}</body></html>".encode()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow index)


@dataclass
class Hit:
    path: str
    status: int
    headers: dict[str, str]


class Scripted:
    """Routes: path -> list of replies, served in order (the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: list[Hit] = []
        self.auth: str | None = None  # "user:password" required when set
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown so slow replies end at once
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str = "/simple", userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def route(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def _next(self, path: str, headers: dict[str, str]) -> Reply:
        with self.lock:
            if self.auth is not None:
                expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
                if headers.get("Authorization") != expected:
                    return Reply(401, b"login", {"WWW-Authenticate": 'Basic realm="index"'})
            replies = self.routes.get(path)
            if not replies:
                return Reply(404, b"not found")
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            etag = reply.headers.get("ETag")
            if reply.status == 200 and etag and headers.get("If-None-Match") == etag:
                return Reply(304, b"", {"ETag": etag})
            return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                headers = dict(self.headers.items())
                reply = server._next(self.path, headers)
                if reply.delay:
                    server.release.wait(reply.delay)
                with server.lock:
                    server.hits.append(Hit(self.path, reply.status, headers))
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout test)

        return Handler


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    scripted.thread.start()
    yield scripted
    scripted.release.set()
    scripted.httpd.shutdown()
    scripted.httpd.server_close()


def client(url: str, **kwargs) -> IndexClient:
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("timeout", 10.0)
    return IndexClient(IndexConfig(url), **kwargs)


def test_json_and_html_give_the_same_files(server):
    server.route("/simple/demo/", Reply(200, json_page(), {"Content-Type": JSON_TYPE}))
    with client(server.url()) as index:
        from_json = index.project_files("Demo")  # the name is canonicalised in the URL
    server.route("/simple/demo/", Reply(200, html_page(), {"Content-Type": "text/html; charset=utf-8"}))
    with client(server.url()) as index:
        from_html = index.project_files("demo")
    assert from_json == from_html
    by_name = {f.filename: f for f in from_json}
    assert by_name["demo-1.0.tar.gz"].yanked == "bad sdist"
    assert by_name["demo-1.0-py3-none-any.whl"].requires_python == ">=3.8"
    assert by_name["demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"].kind is DistKind.WHEEL
    assert by_name["demo-1.0.tar.gz"].url == server.url("/files/demo-1.0.tar.gz")
    assert {f.sha256 for f in from_json} == {SHA}
    first = server.hits[0].headers
    assert first["Accept"] == SIMPLE_ACCEPT
    assert first["User-Agent"] == f"envbisect/{__version__}"


def test_etag_revalidation_uses_the_cache(server, tmp_path):
    server.route("/simple/demo/", Reply(200, json_page(), {"Content-Type": JSON_TYPE, "ETag": '"v1"'}))
    with client(server.url(), cache_dir=tmp_path) as index:
        first = index.project_files("demo")
    with client(server.url(), cache_dir=tmp_path) as index:  # a new process, same cache
        second = index.project_files("demo")
    assert second == first and len(first) == 3
    assert [h.status for h in server.hits] == [200, 304]
    assert "If-None-Match" not in server.hits[0].headers
    assert server.hits[1].headers["If-None-Match"] == '"v1"'
    # Offline: served from the cache without a request.
    with client(server.url(), cache_dir=tmp_path, offline=True) as index:
        assert index.project_files("demo") == first
    assert len(server.hits) == 2


def test_last_modified_revalidation_and_changed_page(server, tmp_path):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    server.route(
        "/simple/demo/",
        Reply(200, html_page(), {"Content-Type": "text/html", "Last-Modified": stamp}),
        Reply(200, json_page().replace(b"demo-2.0-cp311", b"demo-3.0-cp311"), {"Content-Type": JSON_TYPE}),
    )
    with client(server.url(), cache_dir=tmp_path) as index:
        index.project_files("demo")
        changed = index.project_files("demo")
    assert server.hits[1].headers["If-Modified-Since"] == stamp
    assert Version("3.0") in {f.version for f in changed}  # a 200 replaces the cached body


def test_corrupt_cache_entry_is_ignored(server, tmp_path):
    server.route("/simple/demo/", Reply(200, json_page(), {"Content-Type": JSON_TYPE, "ETag": '"v1"'}))
    with client(server.url(), cache_dir=tmp_path) as index:
        expected = index.project_files("demo")
    [entry] = list(tmp_path.iterdir())
    entry.write_bytes(b"\x00garbage")
    with client(server.url(), cache_dir=tmp_path) as index:
        assert index.project_files("demo") == expected
    assert "If-None-Match" not in server.hits[1].headers
    assert server.hits[1].status == 200
    assert entry.read_bytes().startswith(b"{")  # rewritten whole
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # no temp files left


def test_retries_a_503_then_succeeds(server):
    server.route(
        "/simple/demo/",
        Reply(503, b"busy"),
        Reply(200, json_page(), {"Content-Type": JSON_TYPE}),
    )
    with client(server.url(), retries=2) as index:
        assert len(index.project_files("demo")) == 3
    assert [h.status for h in server.hits] == [503, 200]


def test_repeated_5xx_is_unreachable(server):
    server.route("/simple/demo/", Reply(502, b"bad gateway"))
    with client(server.url(), retries=1) as index:
        with pytest.raises(IndexUnreachable) as err:
            index.project_files("demo")
    assert "HTTP 502" in str(err.value) and "--index-url" in str(err.value)
    assert len(server.hits) == 2  # the first try and one retry


def test_slow_index_times_out(server):
    server.route("/simple/demo/", Reply(200, json_page(), {"Content-Type": JSON_TYPE}, delay=30.0))
    with client(server.url(), retries=0, timeout=0.3) as index:
        with pytest.raises(IndexUnreachable) as err:
            index.project_files("demo")
    assert "timed out" in str(err.value)


def test_unknown_package(server):
    with client(server.url(userinfo="user:secret")) as index:
        with pytest.raises(UnknownPackage) as err:
            index.project_files("no-such-thing")
    message = str(err.value)
    assert message.startswith("package 'no-such-thing' was not found on http://***@127.0.0.1:")
    assert "secret" not in message and "--index-url" in message


def test_extra_index_and_find_links_are_merged(server, tmp_path):
    server.route("/extra/demo/", Reply(200, json_page(), {"Content-Type": JSON_TYPE}))
    flat = b'<a href="wheels/demo-4.0-py3-none-any.whl">w</a><a href="wheels/other-1.0.tar.gz">o</a>'
    server.route("/flat.html", Reply(200, flat, {"Content-Type": "text/html"}))
    local = tmp_path / "local"
    local.mkdir()
    for name in ["demo-5.0-py3-none-any.whl", "demo-1.0.tar.gz", "unrelated-1.0.tar.gz"]:
        (local / name).write_bytes(b"")
    config = IndexConfig(server.url(), (server.url("/extra"),), (server.url("/flat.html"), str(local)))
    with IndexClient(config, retries=0) as index:
        files = index.project_files("demo")
    by_name = {f.filename: f for f in files}
    assert sorted(by_name) == [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
        "demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "demo-4.0-py3-none-any.whl",
        "demo-5.0-py3-none-any.whl",
    ]
    assert by_name["demo-1.0.tar.gz"].index_url == server.url("/extra")  # first source wins
    assert by_name["demo-4.0-py3-none-any.whl"].url == server.url("/wheels/demo-4.0-py3-none-any.whl")
    assert by_name["demo-5.0-py3-none-any.whl"].url == (local / "demo-5.0-py3-none-any.whl").as_uri()


def test_file_index_url(tmp_path):
    page = tmp_path / "simple" / "demo"
    page.mkdir(parents=True)
    (page / "index.html").write_bytes(html_page())
    with IndexClient(IndexConfig((tmp_path / "simple").as_uri())) as index:
        files = index.project_files("demo")
        assert {f.filename for f in files} == {name for name, _, _ in FILES}
        with pytest.raises(UnknownPackage):
            index.project_files("absent")


def test_closed_port_is_unreachable_without_leaking_the_password():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: the connection is refused.
    with client(f"http://user:secret@127.0.0.1:{port}/simple", retries=0) as index:
        with pytest.raises(IndexUnreachable) as err:
            index.project_files("demo")
    message = str(err.value)
    assert message.startswith(f"cannot reach package index http://***@127.0.0.1:{port}/simple/demo/: ")
    assert "refused" in message and "--index-url" in message
    assert "secret" not in message and err.value.__cause__ is None


def test_basic_auth_from_url_credentials(server):
    server.auth = "user:s3cret"
    server.route("/simple/demo/", Reply(200, json_page(), {"Content-Type": JSON_TYPE}))
    with client(server.url(userinfo="user:s3cret")) as index:
        files = index.project_files("demo")
    assert len(files) == 3
    assert all("s3cret" not in f.url and "s3cret" not in f.index_url for f in files)
    with client(server.url(userinfo="user:wrong")) as index:
        with pytest.raises(IndexUnreachable) as err:
            index.project_files("demo")
    assert "HTTP 401" in str(err.value) and "wrong" not in str(err.value)


@pytest.mark.network
def test_public_index_lists_packaging():
    with IndexClient(IndexConfig(), timeout=30.0) as index:
        files = index.project_files("packaging")
    by_version: dict[Version, set[str]] = {}
    for f in files:
        if f.version is not None:
            by_version.setdefault(f.version, set()).add(f.kind.value)
    assert by_version[Version("21.3")] == {"wheel", "sdist"}
    assert by_version[Version("22.0")] == {"wheel", "sdist"}
    wheel = next(f for f in files if f.filename == "packaging-22.0-py3-none-any.whl")
    assert wheel.sha256 and wheel.upload_time is not None and wheel.upload_time.year == 2022
    assert wheel.requires_python == ">=3.7"
