"""Issue trackers: post a finding to an issue as one comment, idempotently (GitHub REST).

A finding (a conclusive bisection: the first bad release, or the first good one after a
regression) becomes one comment. Every comment carries a hidden marker
``<!-- envbisect:finding KEY -->`` whose key is derived from the finding itself (kind,
package, version, recipe), never from local state: before posting, every page of the
issue's comments is read and a comment with the same marker is updated in place. So a
re-run, a retry after a timeout, or a run after the local database was deleted never
posts the same finding twice.

The token is read at the moment of each request from ``GITHUB_TOKEN``, else the file
named by ``GITHUB_TOKEN_FILE``, else systemd's ``$CREDENTIALS_DIRECTORY/github_token``
(see :func:`envbisect.secrets.read_token`; the CLI keeps such variables out of its own
environment). It is only ever placed in the ``Authorization`` header of a request to the
API base itself: never stored, logged or returned, never sent over plain http (except to
a loopback host, for tests) and never to another host named by a pagination ``Link``.
The API base comes from ``GITHUB_API_URL`` (the variable GitHub Actions sets; it also
points at GitHub Enterprise). Failures become one-line :class:`TrackerError` subclasses.

What a comment says, and the marker that keys it, are :mod:`envbisect.findings`.

Two ``bisect attach`` (or a daemon and an attach) posting the same finding to the same
issue are serialised by a file lock in the cache directory (:func:`attach_run`), and
duplicates left by an earlier race or another machine are collapsed: the oldest comment
with the marker is kept (updated), the others deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import requests
from filelock import FileLock
from filelock import Timeout as LockTimeout
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from envbisect import __version__, foreignjson, secrets
from envbisect.errors import ConfigError, TrackerError
from envbisect.findings import Finding, finding_for_run, marker_key
from envbisect.redact import redact
from envbisect.store import Store

DEFAULT_API_URL = "https://api.github.com"
API_URL_ENV = "GITHUB_API_URL"
TOKEN_ENV = "GITHUB_TOKEN"
#: Seconds an attach waits for another one posting the same finding to the same issue.
ATTACH_LOCK_TIMEOUT_S = 300.0
#: Comments per page asked for (GitHub's maximum); pagination follows Link headers anyway.
PER_PAGE = 100
_SHORT_ISSUE = re.compile(r"^(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)#(?P<number>\d+)$")
_URL_ISSUE = re.compile(r"^/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)/(?:issues|pull)/(?P<number>\d+)/?$")


class TokenMissing(TrackerError):
    """``GITHUB_TOKEN`` is not set."""


class TrackerAuthFailed(TrackerError):
    """The tracker rejected the token (401) or it lacks a permission (403)."""


class RateLimited(TrackerError):
    """The tracker's rate limit is exhausted; the message says when it resets."""


class IssueNotFound(TrackerError):
    """No such issue (or the token cannot see it)."""


class TrackerUnreachable(TrackerError):
    """Network down, DNS failure, timeout, or a server error."""


class UnsafeTrackerURL(TrackerError):
    """The token would go over plain http to a non-loopback host, or to another host."""


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a URL's hostname) names this machine's loopback interface."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


@dataclass(frozen=True)
class IssueRef:
    """One issue: ``owner/repo#number``."""

    owner: str
    repo: str
    number: int

    def __str__(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"


def parse_issue(text: str) -> IssueRef:
    """``owner/repo#N`` or an issue/pull-request URL (any host, for GitHub Enterprise)."""
    value = text.strip()
    found = _SHORT_ISSUE.match(value)
    if found is None and "://" in value:
        found = _URL_ISSUE.match(urlsplit(value).path)
    if found is None:
        raise ConfigError(f"issue {text!r} is not owner/repo#N or an issue URL; "
                          "write it like octo/project#123 or https://github.com/octo/project/issues/123")
    return IssueRef(found["owner"], found["repo"], int(found["number"]))


class Action(str, Enum):
    """What posting did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Comment:
    id: int
    url: str  # the comment's page (html_url)
    body: str
    user: str = ""  # the author's login


@dataclass(frozen=True)
class Posted:
    action: Action
    comment: Comment


def reset_time(headers: Mapping[str, str], now: datetime | None = None) -> str:
    """When a rate limit lifts, from ``X-RateLimit-Reset`` (epoch) or ``Retry-After`` (s)."""
    now = now or datetime.now(timezone.utc)
    try:
        if headers.get("X-RateLimit-Reset"):
            when = datetime.fromtimestamp(int(headers["X-RateLimit-Reset"]), timezone.utc)
        elif headers.get("Retry-After"):
            when = datetime.fromtimestamp(now.timestamp() + int(headers["Retry-After"]), timezone.utc)
        else:
            return "an unknown time"
    except ValueError:
        return "an unknown time"
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def error_for(status: int, headers: Mapping[str, str], what: str, now: datetime | None = None) -> TrackerError:
    """The one-line error for a failed API response (``what`` names the request)."""
    limited = status == 429 or (status == 403 and (headers.get("X-RateLimit-Remaining") == "0"
                                                   or "Retry-After" in headers))
    if limited:
        return RateLimited(f"GitHub rate limit reached while {what}; it resets at {reset_time(headers, now)}; "
                           "the finding stays queued and is retried on the next cycle")
    if status == 401:
        return TrackerAuthFailed(f"GitHub rejected the token while {what} (HTTP 401); "
                                 f"set {TOKEN_ENV} to a valid token")
    if status == 403:
        return TrackerAuthFailed(f"GitHub refused {what} (HTTP 403); give the token in {TOKEN_ENV} "
                                 "permission to write issues on that repository")
    if status == 404:
        return IssueNotFound(f"no such issue while {what} (HTTP 404); check owner/repo#N, "
                             f"{API_URL_ENV}, and that the token can see the repository")
    if status >= 500:
        return TrackerUnreachable(f"GitHub failed while {what} (HTTP {status}); it is retried on the next cycle")
    return TrackerError(f"GitHub answered HTTP {status} while {what}; check the issue reference and {API_URL_ENV}")


def numeric_id(data: object) -> int | None:
    """The positive integer ``id`` of a JSON object from the API, or None (a JSON ``true``
    is a Python int too, and must not become comment 1)."""
    found = data.get("id") if isinstance(data, dict) else None
    return found if type(found) is int and found > 0 else None


def payload(response: requests.Response, what: str, kind: type = dict):
    """The JSON body of a successful API response, checked to be an object (``kind`` dict)
    or an array (list): a proxy's or captive portal's HTML page, or JSON of another shape,
    is one :class:`TrackerError` line naming the request, never a traceback."""
    try:
        data = foreignjson.loads(response.content)
    except ValueError:
        data = None
    if not isinstance(data, kind):
        wanted = "array" if kind is list else "object"
        got = (response.headers.get("Content-Type") or "no content type").split(";")[0]
        raise TrackerError(f"GitHub's answer while {what} is not a JSON {wanted} "
                           f"(HTTP {response.status_code}, {got}); check {API_URL_ENV}: something else answers there")
    return data


class GitHub:
    """A small client for the issue-comments endpoints of the GitHub REST API."""

    def __init__(self, api_url: str | None = None, *, environ: Mapping[str, str] | None = None,
                 timeout: float = 20.0, retries: int = 2) -> None:
        self.environ = secrets.environ() if environ is None else environ
        self.api_url = (api_url or self.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        self.timeout = timeout
        self._http = requests.Session()
        self._http.headers.update({"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                                   "User-Agent": f"envbisect/{__version__}"})
        # Only reads are retried here: a POST that timed out may have landed, and the
        # marker check on the next cycle is what makes a repeat safe.
        retry = Retry(total=retries, backoff_factor=0.3, status_forcelist=(502, 503, 504),
                      allowed_methods=frozenset({"GET"}), raise_on_status=False)
        self._http.mount("http://", HTTPAdapter(max_retries=retry))
        self._http.mount("https://", HTTPAdapter(max_retries=retry))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def token(self) -> str:
        """The token, read now (see the module docstring); ``""`` when none is configured."""
        try:
            return secrets.read_token(TOKEN_ENV, self.environ)
        except secrets.TokenFileError as exc:
            raise TokenMissing(f"{exc}; point {TOKEN_ENV}_FILE at a readable file holding the token") from None

    def _auth(self) -> dict[str, str]:
        token = self.token()
        if not token:
            raise TokenMissing(f"{TOKEN_ENV} is not set (nor {TOKEN_ENV}_FILE, nor a github_token in "
                               f"$CREDENTIALS_DIRECTORY); export a token allowed to write issues on the repository")
        return {"Authorization": f"Bearer {token}"}

    def _check_api_url(self) -> None:
        """The token goes over https only; plain http only to a loopback host (tests)."""
        parts = urlsplit(self.api_url)
        scheme = parts.scheme.lower()
        if scheme == "https" and parts.hostname:
            return
        if scheme == "http" and is_loopback(parts.hostname):
            return
        raise UnsafeTrackerURL(f"{API_URL_ENV} {redact(self.api_url)} is not an https URL; the token is only sent "
                               f"over https (plain http only to a loopback host): fix {API_URL_ENV}")

    def _call(self, method: str, url: str, what: str, *, ok: tuple[int, ...] = (), extra: dict | None = None,
              **kwargs) -> requests.Response:
        """One request with the token; a status outside 2xx and ``ok`` raises. ``extra``: more headers."""
        self._check_api_url()
        if _origin(url) != _origin(self.api_url):  # never reached: callers build or check URLs
            raise UnsafeTrackerURL(f"refusing to send the token to {redact(url)}, which is not {API_URL_ENV}")
        headers = {**(extra or {}), **self._auth()}
        try:
            response = self._http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            # `from None`: the chained error could echo the request (never the token,
            # but nothing is gained by printing it).
            raise TrackerUnreachable(f"cannot reach GitHub at {redact(self.api_url)} while {what}: "
                                     f"{type(exc).__name__}; check the network or {API_URL_ENV}") from None
        if not 200 <= response.status_code < 300 and response.status_code not in ok:
            raise error_for(response.status_code, response.headers, what)
        return response

    def get(self, path: str, what: str) -> dict:
        """GET ``path`` under the API base (the token in the header); 404 is :class:`IssueNotFound`."""
        return payload(self._call("GET", f"{self.api_url}{path}", what), what)

    def _issue_url(self, issue: IssueRef) -> str:
        return f"{self.api_url}/repos/{issue.owner}/{issue.repo}/issues/{issue.number}/comments"

    @staticmethod
    def _comment(data: object, what: str) -> Comment:
        if (comment_id := numeric_id(data)) is None:
            raise TrackerError(f"GitHub's answer while {what} holds a comment without a numeric id; "
                               f"check {API_URL_ENV}: something else answers there")
        user = data.get("user") if isinstance(data.get("user"), dict) else {}
        return Comment(comment_id, str(data.get("html_url") or data.get("url") or ""), str(data.get("body") or ""),
                       str(user.get("login") or ""))

    def comments(self, issue: IssueRef) -> list[Comment]:
        """Every comment of the issue, following ``Link: rel="next"`` across all pages.

        A next link to another scheme, host or port than ``GITHUB_API_URL`` is not
        followed (the token would go with it): that is an :class:`UnsafeTrackerURL`, since
        a partial list could make :meth:`upsert` post a duplicate.
        """
        url: str | None = self._issue_url(issue)
        params: dict | None = {"per_page": PER_PAGE}
        found: list[Comment] = []
        what = f"reading the comments of {issue}"
        while url:
            if _origin(url) != _origin(self.api_url):
                raise UnsafeTrackerURL(
                    f"GitHub's next page of the comments of {issue} is on another host ({redact(url)}); "
                    f"not following it, so the token stays with {redact(self.api_url)} and nothing was posted; "
                    f"check {API_URL_ENV}")
            response = self._call("GET", url, what, params=params)
            found += [self._comment(c, what) for c in payload(response, what, list)]
            url, params = response.links.get("next", {}).get("url"), None  # the next link carries its query
        return found

    def create(self, issue: IssueRef, body: str) -> Comment:
        what = f"commenting on {issue}"
        response = self._call("POST", self._issue_url(issue), what, json={"body": body})
        return self._comment(payload(response, what), what)

    def _comment_url(self, issue: IssueRef, comment_id: int) -> str:
        return f"{self.api_url}/repos/{issue.owner}/{issue.repo}/issues/comments/{comment_id}"

    def update(self, issue: IssueRef, comment_id: int, body: str) -> Comment:
        url = self._comment_url(issue, comment_id)
        what = f"updating comment {comment_id} on {issue}"
        response = self._call("PATCH", url, what, json={"body": body})
        return self._comment(payload(response, what), what)

    def delete(self, issue: IssueRef, comment_id: int) -> None:
        """Delete a comment; one already gone (404) is fine."""
        try:
            self._call("DELETE", self._comment_url(issue, comment_id), f"deleting comment {comment_id} on {issue}")
        except IssueNotFound:
            pass

    def upsert(self, issue: IssueRef, key: str, body: str) -> Posted:
        """Post ``body`` unless a comment with marker ``key`` exists: then update that one.

        Duplicates with the same marker (a race before the lock, another machine) are
        collapsed: the oldest is kept and updated, the others by the same author deleted.
        """
        mine = sorted((c for c in self.comments(issue) if marker_key(c.body) == key), key=lambda c: c.id)
        if not mine:
            return Posted(Action.CREATED, self.create(issue, body))
        existing, duplicates = mine[0], mine[1:]
        for duplicate in duplicates:
            if duplicate.user == existing.user:  # never someone else's comment quoting ours
                self.delete(issue, duplicate.id)
        if existing.body.strip() == body.strip():
            return Posted(Action.UNCHANGED, existing)
        return Posted(Action.UPDATED, self.update(issue, existing.id, body))


@contextlib.contextmanager
def _attach_lock(lock_dir: Path | None, issue: IssueRef, key: str) -> Iterator[None]:
    """Serialise posting finding ``key`` to ``issue`` across processes sharing ``lock_dir``."""
    if lock_dir is None:
        yield
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{issue}\n{key}".encode()).hexdigest()[:24]
    lock = FileLock(str(lock_dir / f"attach-{name}.lock"))
    try:
        lock.acquire(timeout=ATTACH_LOCK_TIMEOUT_S)
    except LockTimeout:
        raise TrackerError(f"another process has been posting the same finding to {issue} for "
                           f"{ATTACH_LOCK_TIMEOUT_S:.0f} s; the finding stays queued, try again later") from None
    try:
        yield
    finally:
        lock.release()


def attach_run(store: Store, tracker: GitHub, run_id: int, issue: IssueRef, *,
               lock_dir: Path | None = None) -> tuple[Finding, Posted]:
    """Post (or update) run ``run_id``'s finding on ``issue`` and record the attachment.

    Posting holds a per-(issue, finding) file lock in ``lock_dir`` (default: ``.locks``
    beside the store's database; none for an in-memory store), so concurrent attaches of
    the same finding read, then post, one after the other.
    """
    finding = finding_for_run(store.get_run(run_id), store.probes_for_run(run_id))
    if lock_dir is None and store.path is not None:
        lock_dir = store.path.parent / ".locks"
    with _attach_lock(lock_dir, issue, finding.key):
        posted = tracker.upsert(issue, finding.key, finding.body)
    store.add_attachment(run_id, str(issue), posted.comment.url, finding.body_hash)
    return finding, posted
