"""Confirm a tag-to-tag upstream range on GitHub, when a token is configured.

Records layer (it talks to GitHub through :class:`envbisect.trackers.GitHub`, so the token
is handled exactly as for issue comments: ``GITHUB_TOKEN``, ``GITHUB_TOKEN_FILE`` or
systemd's credentials directory, read per request, only ever in the ``Authorization``
header, never stored or logged; the API base is ``GITHUB_API_URL``). Without a token
nothing is sent anywhere and tag ranges stay marked unconfirmed.

For each tag range (:mod:`envbisect.sourcerange`) both tags are looked up with
``GET /repos/OWNER/REPO/git/ref/tags/TAG``. When the guessed style (``v1.2.3`` or
``1.2.3``) misses, the other style is tried; the link then points at the tags that exist
(``confirmed: true``), or stays unconfirmed (``confirmed: false``) with a ``note`` naming
the tag GitHub does not have. A failure to ask (no network, a rejected token, the rate
limit) is a ``note`` too: confirming is never worth failing a finished run for.
Commit ranges are taken as the builds record them and are not looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from envbisect.errors import TrackerError
from envbisect.sourcerange import other_style, with_tags
from envbisect.trackers import GitHub, IssueNotFound


def _exists(gh: GitHub, repo: str, tag: str) -> bool:
    owner_repo = repo.removeprefix("https://github.com/")
    try:
        gh.get(f"/repos/{owner_repo}/git/ref/tags/{quote(tag, safe='')}", f"looking up tag {tag} of {owner_repo}")
    except IssueNotFound:
        return False
    return True


def _confirm_one(gh: GitHub, rng: dict) -> dict:
    old, new = rng["from"], rng["to"]
    styles = [(old, new), (other_style(old, rng["from_version"]), other_style(new, rng["to_version"]))]
    missing = []
    for old_tag, new_tag in styles:
        gone = [t for t in (old_tag, new_tag) if not _exists(gh, rng["repository"], t)]
        if not gone:
            return dict(with_tags(rng, old_tag, new_tag), confirmed=True)
        missing += gone
    return dict(rng, confirmed=False, note=f"GitHub has no tag {' / '.join(missing)} in {rng['repository']}")


def confirm(ranges: list[dict], environ: Mapping[str, str] | None = None) -> list[dict]:
    """``ranges`` with every tag range looked up on GitHub (unchanged without a token)."""
    if not any(r.get("kind") == "tags" for r in ranges):
        return ranges
    with GitHub(environ=environ, retries=1, timeout=10.0) as gh:
        try:
            if not gh.token():
                return ranges
        except TrackerError as exc:
            return [dict(r, note=f"tags not checked: {exc}") if r.get("kind") == "tags" else r for r in ranges]
        out = []
        for rng in ranges:
            try:
                out.append(_confirm_one(gh, rng) if rng.get("kind") == "tags" else rng)
            except TrackerError as exc:
                out.append(dict(rng, note=f"tags not checked: {exc}"))
        return out
