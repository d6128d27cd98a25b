"""A local HTTP server speaking the GitHub REST endpoints envbisect uses.

* ``GET   /repos/{owner}/{repo}/issues/{n}/comments``   paginated (``per_page``, ``page``,
  ``Link`` headers with ``rel="next"``/``"last"``, as GitHub sends them)
* ``POST  /repos/{owner}/{repo}/issues/{n}/comments``   create a comment
* ``PATCH /repos/{owner}/{repo}/issues/comments/{id}``  edit a comment
* ``DELETE /repos/{owner}/{repo}/issues/comments/{id}`` delete a comment (204)
* ``GET   /repos/{owner}/{repo}/git/ref/tags/{tag}``    one tag's ref (404 when there is no
  such tag), as the upstream range's tag confirmation asks it (:meth:`FakeGitHub.add_tags`)
* ``GET   /repos/{owner}/{repo}/issues/comments``   every comment of the repository,
  ``since=`` (inclusive, whole seconds, on ``updated_at``), ``sort=updated``, paginated,
  with an ``ETag`` of the page; ``If-None-Match`` with that ETag answers ``304``
* ``GET   /repos/{owner}/{repo}/issues/{n}``   the issue and its ``labels``
* ``GET   /user``   the token's login (``envbisect-bot``, the default author of comments)
* ``POST  /repos/{owner}/{repo}/issues/comments/{id}/reactions``  201, or 200 when that
  user already reacted so (as GitHub does)

Comments carry ``author_association``, ``issue_url``, ``created_at`` and ``updated_at``
(an edit moves it). :meth:`FakeGitHub.fail` makes the next matching requests answer an
error status (a 500, a 401 with the right token), for outage tests.

``host`` picks the loopback address to listen on (``127.0.0.2`` makes a second "host");
``next_base`` makes ``Link`` headers point at another server; :meth:`FakeGitHub.gate_reads`
holds the first page of comment reads until several clients are reading (a race made
deterministic). Each hit records whether the right token came with it.

Every request must carry ``Authorization: Bearer <token>`` (or ``token <token>``) with
the configured token, else 401. Unknown issues and comments are 404. ``rate_limited``
forces 403 with ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` as GitHub does.
``max_per_page`` caps the page size so tests can force several pages. Every request is
logged in ``hits`` (method, path, status) so tests can count POSTs and PATCHes.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .loopback import Loopback

_ISSUE_COMMENTS = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<number>\d+)/comments$")
_COMMENT = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/comments/(?P<id>\d+)$")
_TAG_REF = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/ref/tags/(?P<tag>[^/]+)$")
_REPO_COMMENTS = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/comments$")
_ISSUE = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<number>\d+)$")
_REACTIONS = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/comments/(?P<id>\d+)/reactions$")


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _epoch(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


@dataclass
class StoredComment:
    id: int
    issue: tuple[str, str, int]
    body: str
    user: str = "envbisect-bot"
    association: str = "NONE"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)


@dataclass
class GitHubHit:
    method: str
    path: str
    status: int
    authorized: bool = False  # the request carried the configured token


class _Gate:
    """Holds callers until ``count`` of them arrived or ``timeout`` passed; then stays open."""

    def __init__(self, count: int, timeout: float) -> None:
        self.count, self.timeout = count, timeout
        self.arrived = 0
        self.opened = False
        self._cond = threading.Condition()

    def wait(self) -> None:
        with self._cond:
            if self.opened:
                return
            self.arrived += 1
            if self.arrived < self.count:
                self._cond.wait_for(lambda: self.opened, timeout=self.timeout)
            self.opened = True
            self._cond.notify_all()


@dataclass
class FakeGitHub:
    """The server's state; start with :meth:`start`, stop with :meth:`stop`."""

    token: str
    max_per_page: int = 100
    host: str = "127.0.0.1"
    next_base: str | None = None  # the base of Link URLs (default: this server)
    rate_limited: bool = False
    reset_epoch: int = 1_900_000_000  # 2030-03-17 17:46:40 UTC
    issues: set[tuple[str, str, int]] = field(default_factory=set)
    comments: list[StoredComment] = field(default_factory=list)
    hits: list[GitHubHit] = field(default_factory=list)
    tags: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    labels: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    reactions: list[tuple[int, str, str]] = field(default_factory=list)  # (comment id, user, content)
    faults: list[list] = field(default_factory=list)  # [status, method, path part, times left]
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: Loopback = field(default_factory=Loopback)
    _gate: _Gate | None = None

    # -- setup -------------------------------------------------------------------

    def add_issue(self, slug: str, number: int, *, existing_comments: int = 0) -> None:
        """Create ``owner/repo#number`` with some unrelated comments already on it."""
        owner, repo = slug.split("/")
        key = (owner, repo, number)
        self.issues.add(key)
        for i in range(existing_comments):
            self._add(key, f"unrelated comment {i}", user="someone")

    def add_comment(self, slug: str, number: int, body: str, user: str = "envbisect-bot",
                    association: str = "NONE") -> StoredComment:
        """Put a comment on an existing issue (e.g. a duplicate left by an earlier race)."""
        owner, repo = slug.split("/")
        return self._add((owner, repo, number), body, user, association)

    def fail(self, status: int, *, method: str | None = None, path_part: str = "", times: int = 1,
             body: bytes | None = None) -> None:
        """Answer the next ``times`` requests (of ``method``, whose path contains
        ``path_part``) with ``status``, whatever the token; with ``body``, that body as it
        is (``text/html``: a proxy or captive portal answering in GitHub's place)."""
        self.faults.append([status, method, path_part, times, body])

    def reactions_on(self, comment_id: int) -> list[str]:
        with self._lock:
            return [content for cid, _user, content in self.reactions if cid == comment_id]

    def add_tags(self, slug: str, *tags: str) -> None:
        """Give repository ``owner/repo`` these tags (for ``git/ref/tags/{tag}``)."""
        owner, repo = slug.split("/")
        self.tags.setdefault((owner, repo), set()).update(tags)

    def gate_reads(self, count: int, timeout: float = 10.0) -> None:
        """Hold first-page comment reads until ``count`` clients are reading (or ``timeout``
        passed), once: concurrent posters then all read before any of them posts."""
        self._gate = _Gate(count, timeout)

    def _add(self, issue: tuple[str, str, int], body: str, user: str = "envbisect-bot",
             association: str = "NONE") -> StoredComment:
        with self._lock:
            self._next_id += 1
            comment = StoredComment(self._next_id, issue, body, user, association)
            self.comments.append(comment)
            return comment

    def start(self) -> FakeGitHub:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        server = ThreadingHTTPServer((self.host, 0), handler)
        server.daemon_threads = True
        self._loop.serve(server, "FakeGitHub")
        return self

    def stop(self) -> None:
        self._loop.stop()

    @property
    def url(self) -> str:
        """The API base, as ``GITHUB_API_URL`` takes it."""
        return f"http://{self.host}:{self._loop.port}"

    # -- queries for tests -------------------------------------------------------

    def comments_on(self, slug: str, number: int, *, user: str | None = "envbisect-bot") -> list[StoredComment]:
        owner, repo = slug.split("/")
        with self._lock:
            return [c for c in self.comments if c.issue == (owner, repo, number) and (user is None or c.user == user)]

    def count(self, method: str, status: int | None = None) -> int:
        return sum(1 for h in self.hits if h.method == method and (status is None or h.status == status))

    # -- request handling ----------------------------------------------------------

    def authorized(self, headers: Any) -> bool:
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        return scheme.lower() in ("bearer", "token") and given == self.token

    def _fault(self, method: str, path: str) -> tuple[int, bytes | None] | None:
        with self._lock:
            for fault in self.faults:
                status, wanted, part, left, body = fault
                if left > 0 and (wanted is None or wanted == method) and part in path:
                    fault[3] -= 1
                    return status, body
        return None

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, dict, Any]:
        split = urlsplit(target)
        fault = self._fault(method, split.path)
        if fault is not None:
            status, raw = fault
            return status, {}, raw if raw is not None else {"message": "Bad credentials" if status == 401 else "Server Error"}
        if not self.authorized(headers):
            return 401, {}, {"message": "Bad credentials"}
        if self.rate_limited:
            return 403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(self.reset_epoch)}, {
                "message": "API rate limit exceeded"}
        tag_match = _TAG_REF.match(split.path)
        if tag_match and method == "GET":
            tag = unquote(tag_match["tag"])
            if tag not in self.tags.get((tag_match["owner"], tag_match["repo"]), set()):
                return 404, {}, {"message": "Not Found"}
            return 200, {}, {"ref": f"refs/tags/{tag}", "object": {"type": "commit", "sha": "0" * 40}}
        issue_match = _ISSUE_COMMENTS.match(split.path)
        if issue_match:
            issue = (issue_match["owner"], issue_match["repo"], int(issue_match["number"]))
            if issue not in self.issues:
                return 404, {}, {"message": "Not Found"}
            if method == "GET":
                query = parse_qs(split.query)
                if self._gate is not None and query.get("page", ["1"])[0] == "1":
                    self._gate.wait()
                return self._page(split.path, issue, query)
            if method == "POST":
                comment = self._add(issue, json.loads(body or b"{}")["body"])
                return 201, {}, self._json(comment)
        if split.path == "/user" and method == "GET":
            return 200, {}, {"login": "envbisect-bot"}
        listed = self._listen_routes(method, split.path, parse_qs(split.query), headers, body)
        if listed is not None:
            return listed
        comment_match = _COMMENT.match(split.path)
        if comment_match and method == "PATCH":
            with self._lock:
                found = next((c for c in self.comments if c.id == int(comment_match["id"])), None)
                if found is None or found.issue[:2] != (comment_match["owner"], comment_match["repo"]):
                    return 404, {}, {"message": "Not Found"}
                found.body = json.loads(body or b"{}")["body"]
                found.updated = time.time()
            return 200, {}, self._json(found)
        if comment_match and method == "DELETE":
            with self._lock:
                found = next((c for c in self.comments if c.id == int(comment_match["id"])), None)
                if found is None or found.issue[:2] != (comment_match["owner"], comment_match["repo"]):
                    return 404, {}, {"message": "Not Found"}
                self.comments.remove(found)
            return 204, {}, None
        return 404, {}, {"message": "Not Found"}

    def _listen_routes(self, method: str, path: str, query: dict, headers: Any, body: bytes):
        """The repository listing, an issue's labels, reactions (None: another route)."""
        repo_match, issue_match, react_match = _REPO_COMMENTS.match(path), _ISSUE.match(path), _REACTIONS.match(path)
        if repo_match and method == "GET":
            since = _epoch(query["since"][0]) if "since" in query else 0.0
            with self._lock:
                items = sorted((c for c in self.comments if c.issue[:2] == (repo_match["owner"], repo_match["repo"])
                                and int(c.updated) >= since), key=lambda c: (int(c.updated), c.id))
            status, extra, payload = self._page(path, None, query, items)
            etag = '"' + hashlib.sha256(json.dumps([query, payload], sort_keys=True).encode()).hexdigest()[:20] + '"'
            if headers.get("If-None-Match") == etag:
                return 304, {"ETag": etag}, None
            return status, {**extra, "ETag": etag}, payload
        if issue_match and method == "GET":
            key = (issue_match["owner"], issue_match["repo"], int(issue_match["number"]))
            if key not in self.issues:
                return 404, {}, {"message": "Not Found"}
            return 200, {}, {"number": key[2], "labels": [{"name": n} for n in self.labels.get(key, [])]}
        if react_match and method == "POST":
            content = json.loads(body or b"{}")["content"]
            with self._lock:
                reaction = (int(react_match["id"]), "envbisect-bot", content)
                if not any(c.id == reaction[0] for c in self.comments):
                    return 404, {}, {"message": "Not Found"}
                fresh = reaction not in self.reactions
                if fresh:
                    self.reactions.append(reaction)
            return (201 if fresh else 200), {}, {"content": content}
        return None

    def _page(self, path: str, issue: tuple[str, str, int] | None, query: dict,
              items: list[StoredComment] | None = None) -> tuple[int, dict, Any]:
        per_page = min(int(query.get("per_page", ["30"])[0]), self.max_per_page)
        page = int(query.get("page", ["1"])[0])
        if items is None:
            with self._lock:
                items = [c for c in self.comments if c.issue == issue]
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        base = self.next_base or self.url
        if page < last:
            keep = {k: v[0] for k, v in query.items() if k not in ("page", "per_page")}
            links.append(f'<{base}{path}?{urlencode({**keep, "per_page": per_page, "page": page + 1})}>; rel="next"')
            links.append(f'<{base}{path}?{urlencode({**keep, "per_page": per_page, "page": last})}>; rel="last"')
        return 200, ({"Link": ", ".join(links)} if links else {}), [self._json(c) for c in chunk]

    def _json(self, comment: StoredComment) -> dict:
        owner, repo, number = comment.issue
        return {"id": comment.id, "body": comment.body, "user": {"login": comment.user},
                "author_association": comment.association,
                "url": f"{self.url}/repos/{owner}/{repo}/issues/comments/{comment.id}",
                "issue_url": f"{self.url}/repos/{owner}/{repo}/issues/{number}",
                "html_url": f"https://github.invalid/{owner}/{repo}/issues/{number}#issuecomment-{comment.id}",
                "created_at": _iso(comment.created), "updated_at": _iso(comment.updated)}


class _Handler(BaseHTTPRequestHandler):
    hub: FakeGitHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.hub.handle(self.command, self.path, self.headers, body)
        self.hub.hits.append(GitHubHit(self.command, urlsplit(self.path).path, status,
                                       self.hub.authorized(self.headers)))
        raw = isinstance(payload, bytes)
        data = b"" if status in (204, 304) else payload if raw else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if raw else "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve
