"""A real package index on 127.0.0.1 for integration tests.

envbisect reads indexes (PEP 691 JSON, PEP 503 HTML), caches them with conditional
requests, and hands them to uv to install from. Tests of all of that need an index
that behaves like a real one but is fully controlled: files are published and pruned
while it serves, requests are logged so a test can count them, and faults can be
injected. :class:`LocalIndex` is that index: a ``ThreadingHTTPServer`` in a daemon
thread on an OS-chosen port, serving

* ``GET /simple/``            the project list,
* ``GET /simple/<project>/``  a project page (non-normalised names are redirected to
                              the normalised one; unknown projects are 404),
* ``GET /files/<filename>``   the files, plus ``<wheel>.metadata`` (PEP 658/714).

The ``flavour`` decides the page format: ``"json"`` always answers PEP 691 JSON,
``"html"`` always PEP 503 HTML (``text/html``, never JSON, like a plain mirror), and
``"both"`` negotiates on ``Accept`` as PEP 691 describes (``?format=`` overrides
it). Every response carries an ``ETag`` (a hash of the body) and ``Last-Modified``;
``If-None-Match`` (and, without it, ``If-Modified-Since``) yields ``304``.
Last-Modified is bumped by at least a second per change, so it may run ahead of the
clock after a burst of publications; that keeps ``If-Modified-Since`` honest. With ``auth`` set, every request needs HTTP
basic credentials, as a private index would.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import html
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from .loopback import Loopback
from .wheels import metadata_field, read_core_metadata

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html"
FLAVOURS = ("json", "html", "both")

#: Accept-header media types a PEP 691 server understands, and what each is served as.
_NEGOTIABLE = {
    JSON_TYPE: JSON_TYPE,
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    HTML_V1_TYPE: HTML_V1_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_V1_TYPE,
    HTML_TYPE: HTML_TYPE,
    "*/*": HTML_TYPE,
}


@dataclass
class Release:
    """One file served by the index, with the per-file facts an index publishes."""

    path: Path
    upload_time: datetime | None = None
    yanked: str | bool = False  # False; True (no reason); or the reason
    requires_python: str | None = None


@dataclass
class Hit:
    """One request as the server saw it: for tests that check what a client sent."""

    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Entry:
    """A published file plus what is derived from it once, at publication."""

    release: Release
    project: str
    version: Version
    sha256: str
    size: int
    metadata: bytes | None  # the wheel's METADATA, served as <file>.metadata
    mtime: float


def negotiate(accept: str | None) -> str:
    """The content type to serve for an ``Accept`` header, by PEP 691 rules.

    The highest quality value wins, ties go to the earlier entry; nothing acceptable
    (or no header) falls back to ``text/html``, the historical default.
    """
    best: tuple[float, int, str] | None = None
    for position, item in enumerate((accept or "").split(",")):
        media, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        served = _NEGOTIABLE.get(media.strip().lower())
        if served and quality > 0 and (best is None or (quality, -position) > best[:2]):
            best = (quality, -position, served)
    return best[2] if best else HTML_TYPE


def _iso(moment: datetime) -> str:
    """PEP 700 upload time: ISO 8601 in UTC with a ``Z`` suffix."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalIndex:
    """A package index served over real HTTP on 127.0.0.1 (see the module docstring).

    Thread-safe: :meth:`add`, :meth:`remove`, :meth:`fail_next` and :meth:`override` may be called
    while clients are being served. ``requests`` logs ``(method, path)`` of every
    request and ``log`` the same with status and headers.
    """

    def __init__(self, root: Path, *, flavour: str = "both", auth: tuple[str, str] | None = None,
                 page_max_age: int = 0, delay_files_s: float = 0.0) -> None:
        """``page_max_age``: the ``Cache-Control: max-age`` of project pages. 0 (the default)
        makes clients revalidate every page; PyPI serves 600, which lets uv keep a page
        for ten minutes without asking, the setting under which a stale uv cache shows.
        ``delay_files_s``: how long a download of a file (not its ``.metadata``) waits
        before it is answered, so a test can catch an install in progress; it may be
        changed while serving, and :meth:`stop` or :meth:`release_files` ends every wait."""
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        self.root = Path(root)
        self.flavour = flavour
        self.auth = auth
        self.page_max_age = page_max_age
        self.delay_files_s = delay_files_s
        self._release = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.log: list[Hit] = []
        self._files_dir = self.root / "files"
        self._files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}  # by filename
        self._project_mtime: dict[str, float] = {}
        #: The last rendered page per (project, content type), with the mtime and base URL
        #: it was rendered at: a page changes only with its project's mtime (every add and
        #: remove ticks it), and a client revalidating it (uv, once per resolve) costs a
        #: lookup instead of a render (4 ms for 256 releases in JSON: CPU the benchmarks'
        #: 2 cores share with the run).
        self._pages: dict[tuple[str, str], tuple[float, str, bytes]] = {}
        self._clock = 0.0
        self._faults: list[tuple[int, int | None]] = []
        self._overrides: dict[str, tuple[bytes, str]] = {}
        self._loop = Loopback()

    # -- publishing ---------------------------------------------------------------

    def _tick(self) -> float:
        """A whole-second modification time that strictly increases per change.

        Last-Modified has one-second resolution; without the bump, two changes in the
        same second would let ``If-Modified-Since`` hide the second one.
        """
        self._clock = max(float(int(time.time())), self._clock + 1)
        return self._clock

    def add(self, path: Path, *, upload_time: datetime | None = None, yanked: str | bool = False,
            requires_python: str | None = None) -> None:
        """Publish a wheel or sdist (copied under ``root``); re-adding replaces it.

        ``upload_time`` defaults to now, as a real index stamps every upload (PEP 700);
        ``requires_python`` defaults to the file's own ``Requires-Python`` metadata,
        as real indexes derive it.
        """
        path = Path(path)
        if path.name.endswith(".whl"):
            project, version, _, _ = parse_wheel_filename(path.name)
        else:
            project, version = parse_sdist_filename(path.name)
        served = self._files_dir / path.name
        if path.resolve() != served.resolve():
            # Copy then rename: a client downloading the old file while it is
            # re-published reads either the old bytes or the new, never a mix.
            staging = served.with_name(f".{served.name}.{threading.get_ident()}.tmp")
            shutil.copyfile(path, staging)
            os.replace(staging, served)
        data = served.read_bytes()
        metadata = read_core_metadata(served)
        if requires_python is None:
            requires_python = metadata_field(metadata, "Requires-Python")
        upload_time = upload_time or datetime.now(timezone.utc)
        release = Release(served, upload_time=upload_time, yanked=yanked, requires_python=requires_python)
        with self._lock:
            mtime = self._tick()
            self._entries[path.name] = _Entry(
                release, canonicalize_name(project), version, hashlib.sha256(data).hexdigest(), len(data),
                metadata if path.name.endswith(".whl") else None, mtime,
            )
            self._project_mtime[canonicalize_name(project)] = mtime

    def remove(self, filename: str) -> None:
        """Unpublish a file (simulates pruning): its URL and listing entry disappear."""
        with self._lock:
            entry = self._entries.pop(filename)
            self._project_mtime[entry.project] = self._tick()

    def fail_next(self, count: int = 1, status: int = 503, *, retry_after: int | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (retry and outage tests)."""
        with self._lock:
            self._faults.extend([(status, retry_after)] * count)

    def override(self, project: str, body: bytes | str | None, content_type: str = JSON_TYPE) -> None:
        """Serve ``body`` verbatim as ``project``'s page (whatever the client accepts), to
        test clients against malformed pages; ``body=None`` goes back to the real page."""
        with self._lock:
            if body is None:
                self._overrides.pop(canonicalize_name(project), None)
            else:
                raw = body.encode() if isinstance(body, str) else body
                self._overrides[canonicalize_name(project)] = (raw, content_type)

    def _override_for(self, project: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._overrides.get(project)

    # -- serving ------------------------------------------------------------------

    def start(self, port: int = 0) -> LocalIndex:
        """Start serving on ``port`` (0: an OS-chosen one); returns self for chaining.

        After :meth:`stop`, ``start(port=old_port)`` serves the same files at the same URL
        again (an index that comes back after an outage)."""
        if self._loop.running:
            return self
        self._release.clear()
        handler = type("_BoundHandler", (_Handler,), {"index": self})
        server = _BoundedServer(("127.0.0.1", port), handler)
        self._loop.serve(server, f"LocalIndex:{server.server_address[1]}")
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        self._release.set()
        self._loop.stop()

    def release_files(self) -> None:
        """Answer every delayed file download now, and the next ones without delay."""
        self.delay_files_s = 0.0
        self._release.set()

    def __enter__(self) -> LocalIndex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._loop.running:
            raise RuntimeError("LocalIndex is not running; call start() first")
        return self._loop.port

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The index URL to give uv or pip (``--index-url``), without credentials."""
        return f"{self.base}/simple"

    @property
    def auth_url(self) -> str:
        """The index URL with the configured credentials embedded (``user:pass@``)."""
        if self.auth is None:
            return self.url
        return f"http://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{self.port}/simple"

    # -- rendering (called by the handler under no lock; takes a snapshot) --------

    def _snapshot(self, project: str | None) -> tuple[list[tuple[str, _Entry]], float]:
        with self._lock:
            entries = [(n, e) for n, e in sorted(self._entries.items()) if project is None or e.project == project]
            mtime = self._project_mtime.get(project, 0.0) if project else max(self._project_mtime.values(), default=0.0)
            return entries, mtime

    def _take_fault(self) -> tuple[int, int | None] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _file_json(self, name: str, entry: _Entry) -> dict[str, Any]:
        yanked = entry.release.yanked
        item: dict[str, Any] = {
            "filename": name,
            "url": f"{self.base}/files/{name}",  # absolute here; the HTML uses relative hrefs
            "hashes": {"sha256": entry.sha256},
            "yanked": yanked if isinstance(yanked, str) and yanked else bool(yanked),
            "size": entry.size,
        }
        if entry.release.requires_python is not None:
            item["requires-python"] = entry.release.requires_python
        if entry.release.upload_time is not None:
            item["upload-time"] = _iso(entry.release.upload_time)
        if entry.metadata is not None:
            digest = {"sha256": hashlib.sha256(entry.metadata).hexdigest()}
            item["core-metadata"] = item["dist-info-metadata"] = digest
        return item

    def _file_anchor(self, name: str, entry: _Entry) -> str:
        attrs = [f'href="../../files/{html.escape(name)}#sha256={entry.sha256}"']
        if entry.release.requires_python is not None:
            attrs.append(f'data-requires-python="{html.escape(entry.release.requires_python)}"')
        if entry.release.yanked is not False:
            reason = entry.release.yanked if isinstance(entry.release.yanked, str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if entry.release.upload_time is not None:
            attrs.append(f'data-upload-time="{_iso(entry.release.upload_time)}"')
        if entry.metadata is not None:
            digest = hashlib.sha256(entry.metadata).hexdigest()
            attrs.append(f'data-core-metadata="sha256={digest}" data-dist-info-metadata="sha256={digest}"')
        return f"<a {' '.join(attrs)}>{html.escape(name)}</a><br/>"

    def render_project(self, project: str, content_type: str) -> tuple[bytes, float] | None:
        """A project page in ``content_type`` and its mtime; None for unknown projects."""
        entries, mtime = self._snapshot(project)
        if not entries:
            return None
        stamp = (mtime, self.base)
        with self._lock:
            cached = self._pages.get((project, content_type))
        if cached is None or cached[:2] != stamp:
            cached = (*stamp, self._render_project(project, content_type, entries))
            with self._lock:
                self._pages[(project, content_type)] = cached
        return cached[2], mtime

    def _render_project(self, project: str, content_type: str, entries: list[tuple[str, _Entry]]) -> bytes:
        if content_type == JSON_TYPE:
            versions = sorted({e.version for _, e in entries})
            doc = {"meta": {"api-version": "1.1"}, "name": project,
                   "files": [self._file_json(n, e) for n, e in entries],
                   "versions": [str(v) for v in versions]}
            return json.dumps(doc, indent=1).encode()
        anchors = "\n".join(self._file_anchor(n, e) for n, e in entries)
        page = (f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.1">'
                f"<title>Links for {project}</title></head>\n<body><h1>Links for {project}</h1>\n{anchors}\n</body></html>\n")
        return page.encode()

    def render_root(self, content_type: str) -> tuple[bytes, float]:
        """The project list in ``content_type`` and the newest mtime of any project."""
        entries, mtime = self._snapshot(None)
        projects = sorted({e.project for _, e in entries})
        if content_type == JSON_TYPE:
            doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in projects]}
            return json.dumps(doc, indent=1).encode(), mtime
        anchors = "\n".join(f'<a href="{p}/">{p}</a><br/>' for p in projects)
        return f"<!DOCTYPE html>\n<html><body>\n{anchors}\n</body></html>\n".encode(), mtime

    def render_file(self, filename: str) -> tuple[bytes, float] | None:
        """A published file's bytes (or its ``.metadata``) and mtime; None if absent."""
        with self._lock:
            entry = self._entries.get(filename)
            meta = self._entries.get(filename.removesuffix(".metadata")) if filename.endswith(".metadata") else None
        if entry is not None:
            try:
                return entry.release.path.read_bytes(), entry.mtime
            except FileNotFoundError:
                return None
        if meta is not None and meta.metadata is not None:
            return meta.metadata, meta.mtime
        return None


class _BoundedServer(ThreadingHTTPServer):
    """At most ``max_workers`` handler threads; accepting waits while all are busy."""

    daemon_threads = True
    max_workers = 32
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_workers)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hung up mid-reply (a build ahead killed during its
        download, a run that exited): expected here, and not the index's fault."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the owning :class:`LocalIndex` (bound as ``index``)."""

    index: LocalIndex
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at stop()
    timeout = 15  # a stalled client cannot pin a worker thread forever
    server_version = "envbisect-test-index/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests read ``index.log`` instead of stderr noise."""

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
               send_body: bool = True) -> None:
        self.index.log.append(Hit(self.command, self.path, status, dict(self.headers.items())))
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status != 304:  # a 304 has no body; its length would describe the cached one
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _authorised(self) -> bool:
        if self.index.auth is None:
            return True
        expected = base64.b64encode(":".join(self.index.auth).encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _serve(self, send_body: bool) -> None:
        self.index.requests.append((self.command, self.path))
        fault = self.index._take_fault()
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return self._reply(status, b"injected fault\n", headers, send_body)
        if not self._authorised():
            return self._reply(401, b"authentication required\n",
                               {"WWW-Authenticate": 'Basic realm="envbisect-test-index"'}, send_body)
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["files"] and len(parts) == 2:
            if self.index.delay_files_s > 0 and not parts[1].endswith(".metadata"):
                self.index._release.wait(self.index.delay_files_s)
            found = self.index.render_file(parts[1])
            return self._send(found, "application/octet-stream", send_body)
        if parts[:1] != ["simple"] or len(parts) > 2:
            return self._reply(404, b"not found\n", send_body=send_body)
        content_type = self._content_type()
        if len(parts) == 1:
            if not path.endswith("/"):
                return self._reply(301, headers={"Location": "/simple/"}, send_body=send_body)
            return self._send(self.index.render_root(content_type), content_type, send_body)
        canonical = canonicalize_name(parts[1])
        override = self.index._override_for(canonical)
        if override is not None:
            body, raw_type = override
            return self._reply(200, body, {"Content-Type": raw_type, "Cache-Control": "no-store"}, send_body)
        found = self.index.render_project(canonical, content_type)
        if found is not None and (parts[1] != canonical or not path.endswith("/")):
            return self._reply(301, headers={"Location": f"/simple/{canonical}/"}, send_body=send_body)
        return self._send(found, content_type, send_body)

    def _content_type(self) -> str:
        if self.index.flavour == "json":
            return JSON_TYPE
        if self.index.flavour == "html":
            return HTML_TYPE
        # PEP 691's optional ``?format=`` parameter overrides the Accept header.
        requested = parse_qs(urlsplit(self.path).query).get("format", [])
        if requested and requested[-1] in _NEGOTIABLE:
            return _NEGOTIABLE[requested[-1]]
        return negotiate(self.headers.get("Accept"))

    def _send(self, found: tuple[bytes, float] | None, content_type: str, send_body: bool) -> None:
        """Send a body with validators, or 304 when the client's copy is current."""
        if found is None:
            return self._reply(404, b"not found\n", send_body=send_body)
        body, mtime = found
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {"ETag": etag, "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
                   "Cache-Control": "max-age=0, must-revalidate"}
        if self.index.page_max_age and self.path.startswith("/simple/"):
            headers["Cache-Control"] = f"max-age={self.index.page_max_age}, public"
        if self.index.flavour == "both":
            headers["Vary"] = "Accept"
        if self._not_modified(etag, mtime):
            return self._reply(304, headers=headers, send_body=False)
        headers["Content-Type"] = content_type + ("; charset=utf-8" if "html" in content_type else "")
        self._reply(200, body, headers, send_body)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        """RFC 9110: If-None-Match decides when present; else If-Modified-Since."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            return "*" in tags or etag in tags
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                return int(mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False
