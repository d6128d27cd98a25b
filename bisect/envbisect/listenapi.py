"""The GitHub REST calls the listener makes beyond posting comments (GitHub REST API).

* ``GET /repos/{owner}/{repo}/issues/comments?since=...&sort=updated&direction=asc``: every
  issue comment of a repository updated at or after the cursor, as a *conditional* request
  (``If-None-Match`` with the last ETag: an unchanged repository answers ``304``, which
  costs no rate limit), following ``Link: rel="next"`` on the API's own origin only.
* ``GET /repos/{owner}/{repo}/issues/{n}``: an issue's labels (for ``labels = [...]``).
* ``GET /user``: the token's own login (markers count only in the daemon's own comments).
* ``POST /repos/{owner}/{repo}/issues/comments/{id}/reactions``: 👀, 🚀, 😕 on a request
  (GitHub answers 200 when the reaction is already there, so reacting is idempotent).

Same token rules and one-line :class:`TrackerError` failures as :class:`GitHub`, which
this client extends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envbisect.errors import TrackerError
from envbisect.redact import redact
from envbisect.trackers import PER_PAGE, GitHub, _origin, numeric_id, payload

_ISSUE_NUMBER = re.compile(r"/issues/(?P<number>\d+)$")
#: GitHub's reaction names for what the daemon says with them.
EYES, ROCKET, CONFUSED = "eyes", "rocket", "confused"


@dataclass(frozen=True)
class IssueComment:
    """One comment of a repository listing: who wrote it, where, and when it last changed."""

    id: int
    issue: int
    user: str
    association: str
    body: str
    updated_at: str
    url: str


@dataclass(frozen=True)
class Listing:
    """A conditional listing: the comments (none when ``not_modified``) and the new ETag."""

    comments: tuple[IssueComment, ...]
    etag: str | None
    not_modified: bool = False


def _parse(data: object) -> IssueComment | None:
    if (comment_id := numeric_id(data)) is None:
        return None  # not a comment (never listed by this endpoint)
    found = _ISSUE_NUMBER.search(str(data.get("issue_url") or ""))
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    if found is None:
        return None  # not an issue comment (never listed by this endpoint)
    return IssueComment(comment_id, int(found["number"]), str(user.get("login") or ""),
                        str(data.get("author_association") or "NONE"), str(data.get("body") or ""),
                        str(data.get("updated_at") or data.get("created_at") or ""), str(data.get("html_url") or ""))


class ListenGitHub(GitHub):
    """:class:`GitHub` plus repository comment listings, issue labels and reactions."""

    def repo_comments(self, repo: str, since: str | None, etag: str | None) -> Listing:
        """Comments of ``repo`` updated since ``since`` (every one when None), conditionally."""
        url: str | None = f"{self.api_url}/repos/{repo}/issues/comments"
        params: dict | None = {"sort": "updated", "direction": "asc", "per_page": PER_PAGE}
        if since:
            params["since"] = since
        what = f"listing the issue comments of {repo}"
        response = self._call("GET", url, what, ok=(304,), extra={"If-None-Match": etag} if etag else None,
                              params=params)
        if response.status_code == 304:
            return Listing((), etag, not_modified=True)
        first_etag = response.headers.get("ETag")
        found: list[IssueComment] = []
        while True:
            found += [c for c in map(_parse, payload(response, what, list)) if c is not None]
            url = response.links.get("next", {}).get("url")
            if not url:
                return Listing(tuple(found), first_etag)
            if _origin(url) != _origin(self.api_url):
                raise TrackerError(f"GitHub's next page of {repo}'s comments is on another host ({redact(url)}); "
                                   "not following it (the token stays with the API); check GITHUB_API_URL")
            response = self._call("GET", url, what)

    def login(self) -> str:
        """The login the token acts as (``GET /user``): only its comments are answers."""
        what = "reading the token's login"
        return str(payload(self._call("GET", f"{self.api_url}/user", what), what).get("login") or "")

    def issue_labels(self, repo: str, number: int) -> list[str]:
        """The names of the labels on issue ``number``."""
        what = f"reading the labels of {repo}#{number}"
        labels = payload(self._call("GET", f"{self.api_url}/repos/{repo}/issues/{number}", what), what).get("labels")
        return [str(label.get("name")) for label in labels if isinstance(label, dict)] if isinstance(labels, list) else []

    def react(self, repo: str, comment_id: int, content: str) -> None:
        """Add reaction ``content`` to a comment (already there: nothing changes)."""
        self._call("POST", f"{self.api_url}/repos/{repo}/issues/comments/{comment_id}/reactions",
                   f"reacting {content} to comment {comment_id} on {repo}", json={"content": content})
