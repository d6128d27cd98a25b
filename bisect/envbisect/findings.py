"""Findings: a finished bisection rendered as an issue comment, keyed by a hidden marker.

Pure (no I/O): a comment carries ``<!-- envbisect:finding KEY -->``, a key derived from
the finding itself (kind, package, version, recipe), never from local state, so whoever
posts it (``bisect attach``, the watch daemon, the listener) can find and update the
comment it posted before instead of posting again (:mod:`envbisect.trackers`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

from envbisect import report
from envbisect.errors import ConfigError
from envbisect.redact import redact

_MARKER = re.compile(r"<!-- envbisect:finding (?P<key>[^\s>]+) -->")


def marker(key: str) -> str:
    """The hidden HTML comment that names a finding inside a comment body."""
    return f"<!-- envbisect:finding {key} -->"


def marker_key(body: str | None) -> str | None:
    """The finding key a comment body carries, if any."""
    found = _MARKER.search(body or "")
    return found["key"] if found else None


def safe_key(*parts: object) -> str:
    """A marker key from parts: only characters that cannot end an HTML comment."""
    text = "/".join(str(p) for p in parts if p not in (None, ""))
    text = re.sub(r"[^A-Za-z0-9._=+/-]", "_", text)
    return re.sub(r"-{2,}", "-", text)  # "--" would end the HTML comment early


class FindingKind(str, Enum):
    """What a comment reports."""

    REGRESSION = "regression"
    FIX = "fix"


@dataclass(frozen=True)
class Finding:
    """A comment ready to post: its stable key, kind, whether it is conclusive, and body."""

    key: str
    kind: FindingKind
    conclusive: bool
    version: str | None
    body: str

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()


def finding_for_run(run: dict, probes: list[dict]) -> Finding:
    """Render a finished bisection run as an issue comment (marker + title + report)."""
    result = run.get("result") or {}
    if run.get("kind") != "bisect" or not result:
        raise ConfigError(f"run {run.get('id')} is a {run.get('kind')} run ({run.get('status')}); "
                          "only finished bisections can be attached: pick one from `bisect history`")
    kind = FindingKind.FIX if result.get("find_fix") else FindingKind.REGRESSION
    old_key, new_key = report.boundary_keys(result)
    old, new = result.get(old_key), result.get(new_key)
    package = result.get("package") or run.get("package")
    stem = (result.get("recipe") or run.get("recipe_path") or "recipe").replace("\\", "/").rsplit("/", 1)[-1]
    conclusive = result.get("status") == "found" and bool(new)
    if conclusive:
        key = safe_key(kind.value, f"{package}=={new}", stem.removesuffix(".py"))
        if kind is FindingKind.FIX:
            title = f"**envbisect: fixed in `{package}` {new}** (first good release; last bad: {old}"
            title += f"; the regression came in {result['introduced_in']})" if result.get("introduced_in") else ")"
        else:
            title = f"**envbisect: regression in `{package}` {new}** (first bad release; last good: {old})"
    else:
        key = safe_key(kind.value, package, f"{result.get('status')}-{old}-{new}", stem.removesuffix(".py"))
        title = f"**envbisect: {report.headline(result)}**"
    body = f"{marker(key)}\n{title}\n\n{report.markdown(run, probes)}"
    return Finding(key, kind, conclusive, new, redact(body))
