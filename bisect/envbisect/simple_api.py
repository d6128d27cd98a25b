"""The "simple" repository API as data: PEP 503 HTML and PEP 691 JSON project pages,
flat find-links pages and local directories, parsed into :class:`DistFile` records.

Pure parsing (no HTTP): :mod:`envbisect.index` fetches and caches the pages and hands
their bodies here. Filenames, versions and wheel tags are read with ``packaging``. A JSON
page of the wrong shape raises :class:`~envbisect.errors.IndexInvalid` (one line naming the
page and the problem, exit 6), never a KeyError or TypeError from deep inside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from envbisect import foreignjson
from envbisect.errors import IndexInvalid
from envbisect.printable import printable
from envbisect.redact import redact

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_SDIST_SUFFIXES = (".tar.gz", ".zip")


class DistKind(str, Enum):
    """What a distribution file is; compares equal to its value ("wheel" / "sdist")."""

    WHEEL = "wheel"
    SDIST = "sdist"


@dataclass(frozen=True)
class DistFile:
    """One downloadable file of a project, as an index describes it."""

    filename: str
    url: str  # absolute URL (fragment stripped)
    project: str  # canonical name
    version: Version | None  # None when the filename's version does not parse
    kind: DistKind
    tags: frozenset[Tag]  # wheel tags; empty for sdists
    requires_python: str | None
    yanked: str | None  # None = not yanked; the reason ("" if none given) when yanked
    upload_time: datetime | None  # tz-aware UTC
    sha256: str | None
    index_url: str  # the index (or find-links location) it came from, credentials redacted


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO-8601 upload time as tz-aware UTC; naive times are taken as UTC."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def dist_file(
    filename: str,
    url: str,
    *,
    index_url: str,
    requires_python: str | None = None,
    yanked: str | None = None,
    upload_time: datetime | None = None,
    sha256: str | None = None,
) -> DistFile | None:
    """Describe one file from its name and index metadata; None if not a wheel/sdist."""
    url, fragment = urldefrag(url)
    if sha256 is None and fragment.startswith("sha256="):
        sha256 = fragment.partition("=")[2]
    tags: frozenset[Tag] = frozenset()
    version: Version | None
    if filename.endswith(".whl"):
        kind = DistKind.WHEEL
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            parts = filename[: -len(".whl")].split("-")
            if len(parts) not in (5, 6):
                return None
            # Keep the file (versions.py reports it) but without a version.
            name, version, tags = canonicalize_name(parts[0]), None, parse_tag_triple(parts[-3:])
    elif filename.endswith(_SDIST_SUFFIXES):
        kind = DistKind.SDIST
        try:
            name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename:
            stem, sep, _ = filename.rpartition("-")
            if not sep:
                return None
            name, version = canonicalize_name(stem), None
    else:
        return None
    return DistFile(  # the index's text is shown (versions, reasons): kept printable
        filename=printable(filename),
        url=url,
        project=str(name),
        version=version,
        kind=kind,
        tags=tags,
        requires_python=printable((requires_python or "").strip()) or None,
        yanked=None if yanked is None else printable(yanked),
        upload_time=upload_time,
        sha256=sha256,
        index_url=index_url,
    )


def parse_tag_triple(parts: Sequence[str]) -> frozenset[Tag]:
    """Expand a wheel's compressed ``py-abi-platform`` triple into its tags."""
    py, abi, plat = parts
    return frozenset(Tag(i, a, p) for i in py.split(".") for a in abi.split(".") for p in plat.split("."))


def raw_version(file: DistFile) -> str:
    """The version as written in the filename (useful when it does not parse)."""
    if file.kind is DistKind.WHEEL:
        return file.filename.split("-")[1]
    stem = file.filename.removesuffix(".zip").removesuffix(".tar.gz")
    return stem.rpartition("-")[2]


def _json_kind(value: object) -> str:
    """What a decoded JSON value is, in JSON's words."""
    kinds = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
             (list, "an array"), (Mapping, "an object"), (type(None), "null"))
    return next((word for kind, word in kinds if isinstance(value, kind)), type(value).__name__)


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else _json_kind(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: Optional per-file keys this parser reads: the JSON kinds each may have (None: null).
_FILE_KEYS: dict[str, tuple[type | None, ...]] = {
    "requires-python": (str, None),
    "yanked": (bool, str, None),
    "upload-time": (str, None),
    "hashes": (Mapping, None),
}
_FILE_KEY_WORDS = {"requires-python": "a string", "yanked": "a boolean or a string (the reason)",
                   "upload-time": "an ISO 8601 string", "hashes": "an object of hash names to hex digests"}


def _page_problem(data: object) -> str | None:
    """What is wrong with a decoded PEP 691 project page, None when nothing this parser
    reads is wrong (keys it does not read are not judged: later API versions add some)."""
    if not isinstance(data, Mapping):
        return f"the page is {_json_kind(data)}, not a JSON object"
    files = data.get("files")
    if not isinstance(files, list):
        return "it has no \"files\" array" if files is None else f'"files" is {_json_kind(files)}, not an array'
    for number, entry in enumerate(files):
        where = f"files[{number}]"
        if not isinstance(entry, Mapping):
            return f"{where} is {_json_kind(entry)}, not an object"
        for key in ("filename", "url"):
            if key not in entry:
                return f'{where} has no "{key}"'
            if not isinstance(entry[key], str) or not entry[key]:
                return f'{where}."{key}" must be a non-empty string, not {_short(entry[key])}'
        for key, kinds in _FILE_KEYS.items():
            value = entry.get(key)
            if not any(value is None if kind is None else isinstance(value, kind) for kind in kinds):
                return f'{where} ({entry["filename"]}): "{key}" must be {_FILE_KEY_WORDS[key]}, not {_short(value)}'
        for name, digest in (entry.get("hashes") or {}).items():
            if not isinstance(digest, str):
                return f'{where} ({entry["filename"]}): "hashes"."{name}" must be a string, not {_short(digest)}'
    return None


def parse_simple_json(payload: str | bytes | Mapping, *, page_url: str, index_url: str) -> list[DistFile]:
    """Files of a PEP 691 JSON project page (``yanked`` may be a bool or a reason).

    A page that is not valid JSON or whose file entries have the wrong shape raises
    :class:`IndexInvalid` (an index failure, exit 6), one line naming the page and the
    first problem; it is never half read."""
    try:
        data = payload if isinstance(payload, Mapping) else foreignjson.loads(payload)
    except ValueError as exc:  # JSONDecodeError, bytes that are not UTF-8, nested too deeply
        problem = f"it is not valid JSON ({exc})"
    else:
        problem = _page_problem(data)
    if problem is not None:
        raise IndexInvalid(f"package index {redact(page_url)} sent an invalid PEP 691 project page: {problem}; "
                           "the index is broken: tell its maintainers, or pass another --index-url")
    files = []
    for entry in data["files"]:
        yanked = entry.get("yanked", False)
        found = dist_file(
            entry["filename"],
            urljoin(page_url, entry["url"]),
            index_url=index_url,
            requires_python=entry.get("requires-python"),
            yanked=(yanked if isinstance(yanked, str) else "") if yanked else None,
            upload_time=parse_timestamp(entry.get("upload-time")),
            sha256=(entry.get("hashes") or {}).get("sha256"),
        )
        if found is not None:
            files.append(found)
    return files


class _AnchorParser(HTMLParser):
    """Collects the attributes of ``<a href>`` elements (HTMLParser unescapes values)."""

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.base = page_url
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "base" and found.get("href"):
            self.base = urljoin(self.base, found["href"])
        elif tag == "a" and found.get("href"):
            self.anchors.append(found)


def parse_simple_html(text: str, *, page_url: str, index_url: str) -> list[DistFile]:
    """Files of a PEP 503 HTML page (also a flat find-links page)."""
    parser = _AnchorParser(page_url)
    parser.feed(text)
    parser.close()
    files = []
    for attrs in parser.anchors:
        url = urljoin(parser.base, attrs["href"] or "")
        # The file name is the URL's last path segment (PEP 503), not the anchor text.
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        found = dist_file(
            filename,
            url,
            index_url=index_url,
            requires_python=attrs.get("data-requires-python"),
            # A bare ``data-yanked`` attribute means yanked without a reason.
            yanked=(attrs["data-yanked"] or "") if "data-yanked" in attrs else None,
            upload_time=parse_timestamp(attrs.get("data-upload-time")),
        )
        if found is not None:
            files.append(found)
    return files


def parse_page(body: bytes, content_type: str, *, page_url: str, index_url: str) -> list[DistFile]:
    """Dispatch on the response's content type: PEP 691 JSON, else PEP 503 HTML."""
    mime, _, params = content_type.partition(";")
    if mime.strip().lower() == JSON_TYPE:
        return parse_simple_json(body, page_url=page_url, index_url=index_url)
    charset = re.search(r"charset=([\w.-]+)", params)
    encoding = charset.group(1) if charset else "utf-8"
    try:
        text = body.decode(encoding, errors="replace")
    except LookupError:  # an unknown charset name: utf-8 is the only sane guess
        text = body.decode("utf-8", errors="replace")
    return parse_simple_html(text, page_url=page_url, index_url=index_url)


def list_directory(directory: Path, *, index_url: str) -> list[DistFile]:
    """Files of a local find-links directory (``*.whl``, ``*.tar.gz``, ``*.zip``)."""
    found = (dist_file(p.name, p.resolve().as_uri(), index_url=index_url) for p in sorted(directory.iterdir()))
    return [f for f in found if f is not None]


# ----------------------------------------------------------------------------- client
