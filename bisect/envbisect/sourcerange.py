"""The upstream change range of a finding: which commits lie between last good and first bad.

Pure: derives links from what :mod:`envbisect.sourceprobe` read in each boundary env (a
distribution's recorded revision and its metadata URLs); no I/O. For one package that
moved from ``old`` to ``new``:

1. **Repository**: the first GitHub ``https://github.com/OWNER/REPO`` named by the
   metadata of the newer build (else the older one), by label in the order of
   :data:`_REPO_LABELS` (Source, Repository, Code, ..., Home-page, Download-URL); funding
   and documentation links never count. Nothing else is ever taken for a repository: a
   package whose metadata names none gets no link, and the range says so.
2. **Commits** when both builds record their revision (torch's ``git_version``, torch
   nightlies included; numpy's ``git_revision``; a VCS install's ``direct_url.json``):
   ``REPO/compare/OLD...NEW``, exact.
3. **Release tags** otherwise, for final and pre-releases (never for a dev or local
   build: a nightly without a recorded revision has no tag): ``REPO/compare/A...B``.
   Whether a project tags ``v1.2.3`` or ``1.2.3`` is not in its metadata, so the style is
   chosen from evidence: a metadata URL that shows a tag (``/releases/tag/v1.0``,
   ``/tree/1.0``), else the shape of the version: three or more components
   (``2.16.1``: torch, TensorFlow, numpy, Keras) get ``v``, two (``22.0``: packaging,
   pip, Django) do not. Such a link is marked unconfirmed (``confirmed: false``, "tags
   unconfirmed") until :mod:`envbisect.sourcecheck` finds both tags with a GitHub token.
4. The changelog: a metadata URL labelled Changelog / Changes / Release notes / History.

A range is a dict (``package``, ``from_version``, ``to_version``, ``repository``,
``from``, ``to``, ``kind`` = ``commits`` | ``tags``, ``url``, ``changelog``,
``confirmed``, ``reason``): ``url`` is None exactly when ``reason`` says why.
``confirmed`` concerns tags only: false for a guessed tag style, true once both tags were
found on GitHub; None for commit ranges (exact as the builds record them, not looked up).
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

_GITHUB = re.compile(r"^(?:https?|git\+https|git)://(?:www\.)?github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)"
                     r"(?:\.git)?(?:[/#?].*)?$", re.IGNORECASE)
#: Path segments right after github.com that are not an owner.
_NOT_OWNERS = {"sponsors", "orgs", "features", "topics", "marketplace", "apps", "settings", "login"}
#: Labels that may name the repository, best first (compared in lower case, without spaces).
_REPO_LABELS = ("source", "sourcecode", "repository", "code", "github", "git", "homepage", "home-page", "home",
                "download-url", "download", "issues", "issuetracker", "bugtracker", "tracker", "bugreports")
_CHANGELOG = re.compile(r"change\s*-?\s*log|changes|release\s*notes|history|what'?s\s*new", re.IGNORECASE)
_TAG_IN_URL = re.compile(r"/(?:releases/tag|tree|blob|compare)/(?P<v>v?)\d", re.IGNORECASE)


def _key(label: str) -> str:
    return re.sub(r"[\s_]+", "", label.lower())


def repository(urls: dict[str, str] | None) -> str | None:
    """``https://github.com/OWNER/REPO`` named by these metadata URLs, or None."""
    ranked = sorted((urls or {}).items(), key=lambda kv: _rank(kv[0]))
    for label, url in ranked:
        if _rank(label) == len(_REPO_LABELS):
            continue  # funding, documentation, chat...: never a repository
        found = _GITHUB.match(url.strip())
        if found and found["owner"].lower() not in _NOT_OWNERS:
            return f"https://github.com/{found['owner']}/{found['repo']}"
    return None


def _rank(label: str) -> int:
    key = _key(label)
    return _REPO_LABELS.index(key) if key in _REPO_LABELS else len(_REPO_LABELS)


#: A URL shown as it is, in a terminal summary and in a Markdown comment: http(s), and no
#: space, control character, quote or bracket (nothing that could end a Markdown link or
#: start a new one, or act on a terminal).
_PLAIN_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f-\x9f<>()\[\]{}`\"'\\]+", re.IGNORECASE)


def changelog(urls: dict[str, str] | None) -> str | None:
    """The changelog URL of the metadata, or None. Metadata is the package author's text,
    shown in reports and issue comments: a URL that is not plain (:data:`_PLAIN_URL`) is
    left out rather than shown."""
    return next((url.strip() for label, url in (urls or {}).items()
                 if _CHANGELOG.search(label) and _PLAIN_URL.fullmatch(url.strip())), None)


def tag_prefix(version: str, urls: dict[str, str] | None) -> str:
    """``"v"`` or ``""``: the tag style the metadata shows, else the version's shape."""
    for url in (urls or {}).values():
        if (shown := _TAG_IN_URL.search(url)) is not None:
            return shown["v"].lower()
    try:
        return "v" if len(Version(version).release) >= 3 else ""
    except InvalidVersion:
        return ""


def taggable(version: str | None) -> bool:
    """Whether a release of this version is expected to have a tag (not a dev/local build)."""
    try:
        v = Version(version or "")
    except InvalidVersion:
        return False
    return not v.is_devrelease and v.local is None


def info_of(source: dict | None, package: str) -> dict | None:
    """One distribution's entry of a probe's ``source`` record."""
    dists = (source or {}).get("dists") or {}
    return dists.get(canonicalize_name(package))


def derive(package: str, old_version: str | None, new_version: str | None,
           old_source: dict | None, new_source: dict | None) -> dict:
    """The range of ``package`` between the two boundary builds (see the module docstring).
    ``old_source``/``new_source`` are the probes' whole ``source`` records (None: the probe
    was recorded before envbisect read sources)."""
    out = {"package": package, "from_version": old_version, "to_version": new_version, "repository": None,
           "from": None, "to": None, "kind": None, "url": None, "changelog": None, "confirmed": None, "reason": None}
    if old_version is None or new_version is None:
        where, present = ("newer", new_version) if old_version is None else ("older", old_version)
        return dict(out, reason=f"only the {where} boundary environment has {package} {present}")
    if old_source is None or new_source is None:
        return dict(out, reason="the boundary probes were recorded without their sources; rerun with --no-reuse")
    old, new = info_of(old_source, package) or {}, info_of(new_source, package) or {}
    repo = repository(new.get("urls")) or repository(old.get("urls"))
    out.update(repository=repo, changelog=changelog(new.get("urls")) or changelog(old.get("urls")))
    if repo is None:
        errors = [s["error"] for s in (old_source, new_source) if s.get("error")]
        why = f"reading the sources failed ({errors[0]})" if errors else \
            f"{package}'s metadata names no GitHub repository"
        return dict(out, reason=f"no upstream link: {why}")
    if old.get("revision") and new.get("revision"):
        return dict(out, kind="commits", **{"from": old["revision"], "to": new["revision"]},
                    url=f"{repo}/compare/{old['revision']}...{new['revision']}")
    if not (taggable(old_version) and taggable(new_version)):
        builds = [v for v in (old_version, new_version) if not taggable(v)]
        what = "is a dev or local build" if len(builds) == 1 else "are dev or local builds"
        return dict(out, reason=f"no upstream link: {package} {' and '.join(builds)} {what} without a recorded "
                                "source revision, so no release tag to compare")
    prefix = tag_prefix(new_version or "", new.get("urls") or old.get("urls"))
    return with_tags(dict(out, kind="tags", confirmed=False), f"{prefix}{old_version}", f"{prefix}{new_version}")


def with_tags(rng: dict, old_tag: str, new_tag: str) -> dict:
    """``rng`` pointing at the compare link of these two tags."""
    return dict(rng, **{"from": old_tag, "to": new_tag}, url=f"{rng['repository']}/compare/{old_tag}...{new_tag}")


def other_style(tag: str, version: str) -> str:
    """The same release's tag in the other style (``v1.2.3`` <-> ``1.2.3``)."""
    return version if tag.startswith("v") and tag != version else f"v{version}"


def moved(old: dict | None, new: dict | None) -> list[str]:
    """Packages whose resolved version differs between the two envs, sorted."""
    old, new = old or {}, new or {}
    return sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))


def describe(rng: dict) -> str:
    """One line: the link and what it rests on, or why there is none."""
    if not rng.get("url"):
        return f"unknown ({rng.get('reason') or 'nothing recorded'})"
    if rng.get("kind") == "commits":
        how = "commits the builds record"
    else:
        how = "release tags, " + ("confirmed on GitHub" if rng.get("confirmed") else "unconfirmed")
    note = f"; {rng['note']}" if rng.get("note") else ""
    return f"{rng['url']} ({how}{note})"


def summary_lines(result: dict) -> list[str]:
    """The ``upstream ...`` lines of a text summary (indented by the caller)."""
    ranges = result.get("source_ranges")
    if ranges is None:
        single = result.get("source_range")
        ranges = [single] if single else []
    lines = []
    for rng in ranges:
        lines.append(f"upstream {rng.get('package') or ''}: {describe(rng)}".replace("upstream : ", "upstream: "))
        if rng.get("changelog"):
            lines.append(f"changelog {rng['package']}: {rng['changelog']}")
    if not ranges and result.get("source_range_reason"):
        lines.append(f"upstream: unknown ({result['source_range_reason']})")
    return lines


def markdown_lines(result: dict) -> list[str]:
    """The report's "Upstream changes" section (empty when the result has none)."""
    lines = summary_lines(result)
    if not lines:
        return []
    out = ["", "#### Upstream changes", ""]
    for line in lines:
        head, _, rest = line.partition(": ")
        out.append(f"- **{head.removeprefix('upstream ')}:** {rest}")
    return out
