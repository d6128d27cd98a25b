"""The daemon's answers to ``/envbisect run`` requests: bodies and hidden markers. Pure.

Every answer carries ``<!-- envbisect:request KEY -->`` (the request's repository and
comment id) and ``<!-- envbisect:state STATE -->`` (``running`` while the run goes on,
``done`` once it ended). Like a finding's marker (:mod:`envbisect.trackers`), they make
answering idempotent without local state: before answering, the daemon reads the issue's
comments, so a request whose final answer exists is never run again, and one whose answer
says ``running`` (the daemon was killed) is resumed and answered in the same comment.
A refusal carries ``<!-- envbisect:denied KEY -->`` (issue and author): at most one per
author and issue, however often they ask.
"""

from __future__ import annotations

import re

from envbisect.redact import redact
from envbisect.findings import safe_key

RUNNING = "running"
DONE = "done"
_REQUEST = re.compile(r"<!-- envbisect:request (?P<key>[^\s>]+) -->")
_STATE = re.compile(r"<!-- envbisect:state (?P<state>\w+) -->")
_DENIED = re.compile(r"<!-- envbisect:denied (?P<key>[^\s>]+) -->")
#: Characters of a recipe shown in an answer (GitHub's comment limit is 65536).
RECIPE_SHOWN = 20_000
#: Characters of a run report kept in an answer.
REPORT_SHOWN = 40_000


def request_key(repo: str, comment_id: int) -> str:
    """The request's key: its repository and comment id (unique on GitHub)."""
    return safe_key(repo, comment_id)


def denied_key(repo: str, issue: int, login: str) -> str:
    return safe_key(repo, issue, login.lower())


def answer_of(body: str | None) -> tuple[str, str] | None:
    """(request key, state) of an answer comment, None for any other comment."""
    found = _REQUEST.search(body or "")
    if found is None:
        return None
    state = _STATE.search(body or "")
    return found["key"], state["state"] if state else RUNNING


def denial_of(body: str | None) -> str | None:
    found = _DENIED.search(body or "")
    return found["key"] if found else None


def _fenced(text: str, lang: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def recipe_block(text: str, digest: str) -> str:
    """The request's recipe, collapsed, with its hash (what was run is what is shown)."""
    shown = text if len(text) <= RECIPE_SHOWN else text[:RECIPE_SHOWN] + "\n# ... (cut)"
    return (f"<details><summary>Recipe (sha256 <code>{digest[:16]}</code>)</summary>\n\n"
            f"{_fenced(shown, 'python')}\n\n</details>")


def _head(key: str, state: str) -> str:
    return f"<!-- envbisect:request {key} -->\n<!-- envbisect:state {state} -->\n"


def progress(key: str, author: str, command: str, recipe: str, digest: str, lines: list[str]) -> str:
    """The answer while the run goes on: what was asked and every probe so far."""
    done = "\n".join(f"- {line}" for line in lines) or "- (building the first environment)"
    body = (f"{_head(key, RUNNING)}**envbisect: running** `{command}` for @{author} :eyes:\n\n"
            f"Probes so far:\n{done}\n\n{recipe_block(recipe, digest)}\n")
    return redact(body)


def final(key: str, author: str, command: str, recipe: str, digest: str, title: str, details: str) -> str:
    """The answer once the run ended: ``title`` (found / not reproduced / failed) and details."""
    if len(details) > REPORT_SHOWN:
        details = details[:REPORT_SHOWN] + "\n\n(report cut; see `bisect report` on the daemon's host)"
    body = (f"{_head(key, DONE)}**envbisect: {title}** (`{command}`, asked by @{author})\n\n{details}\n\n"
            f"{recipe_block(recipe, digest)}\n")
    return redact(body)


def invalid(key: str, author: str, message: str) -> str:
    """The one answer to a request that cannot be run as written."""
    return redact(f"{_head(key, DONE)}**envbisect: cannot run this request**, @{author}: {message}\n\n"
                  "Edit nothing: post a new comment with the fixed request.\n")


def denied(key: str, author: str, who: str) -> str:
    """The one polite reply to someone who may not ask for runs here."""
    return (f"<!-- envbisect:denied {key} -->\nThanks for the request, @{author}. envbisect only runs "
            f"`/envbisect run` requests from {who} on this repository, because a request runs code on the "
            "maintainers' machine. Please ask one of them to post it.\n")
