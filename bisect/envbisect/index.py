"""Read package indexes: which files exist for a project, and what each file says.

This module owns the conversation with package indexes (PEP 503 HTML and PEP 691 JSON
"simple" pages, flat find-links pages and local directories), the on-disk HTTP cache
that makes repeated bisections cheap (ETag / Last-Modified revalidation), retries, and
and redacts (:mod:`envbisect.redact`) credentials from everything it says. It never installs
anything: turning files into candidates is :mod:`envbisect.versions`' job, and
installing them is :mod:`envbisect.envs`'.

Index settings come from flags and the environment (``UV_*`` then ``PIP_*`` variables,
see :meth:`IndexConfig.resolve`). pip's configuration *files* are deliberately not
read: the environments are built by uv, which ignores them too, so honouring them here
would make envbisect list versions that the installer then cannot see.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
import urllib3
from packaging.utils import (
    canonicalize_name,
)
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from envbisect import __version__
from envbisect.errors import CacheError, IndexUnreachable, UnknownPackage
from envbisect.redact import redact, strip_credentials
from envbisect.simple_api import (  # noqa: F401 - re-exported: callers know these as index.*
    JSON_TYPE,
    DistFile,
    DistKind,
    dist_file,
    list_directory,
    parse_page,
    parse_simple_html,
    parse_simple_json,
    parse_tag_triple,
    parse_timestamp,
    raw_version,
)

DEFAULT_INDEX_URL = "https://pypi.org/simple"
#: The variables that name the main index, first one set wins (uv's, then pip's).
INDEX_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")

#: PEP 691 content negotiation: JSON preferred, HTML accepted from older indexes.
SIMPLE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
_RETRY_STATUSES = (429, 500, 502, 503, 504)
def _env_list(environ: Mapping[str, str], name: str, *, commas: bool = False) -> list[str]:
    value = environ.get(name, "")
    return (value.replace(",", " ") if commas else value).split()


def _dedupe(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def _list_safe(link: str, pip: bool) -> str:
    """A find-links location that survives its installer's list splitting (see
    :meth:`IndexConfig.installer_env`): unchanged unless it contains the separator, else
    a ``file:`` URL (local paths) or the URL with that separator percent-encoded."""
    if not (re.search(r"\s", link) if pip else "," in link):
        return link
    if "://" not in link and not link.startswith("file:"):
        return Path(link).absolute().as_uri()
    return re.sub(r"\s", lambda m: f"%{ord(m.group(0)):02X}", link) if pip else link.replace(",", "%2C")


@dataclass(frozen=True)
class IndexConfig:
    """Where packages come from: one main index, extra indexes and find-links."""

    index_url: str = DEFAULT_INDEX_URL
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()  # local directories or URLs of flat HTML pages

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str],
        *,
        index_url: str | None = None,
        extra_index_urls: Sequence[str] = (),
        find_links: Sequence[str] = (),
    ) -> IndexConfig:
        """Combine flags with the environment the way uv and pip users expect.

        Main index: the argument, else ``UV_DEFAULT_INDEX``, ``UV_INDEX_URL``,
        ``PIP_INDEX_URL``, else the default. Extras and find-links: the arguments
        followed by uv's variables (``UV_INDEX`` / ``UV_EXTRA_INDEX_URL``,
        ``UV_FIND_LINKS``) or, when those are unset, pip's. pip's config files are
        not read (see the module docstring).
        """
        main = index_url or next(
            (environ[k] for k in INDEX_VARIABLES if environ.get(k)),
            DEFAULT_INDEX_URL,
        )
        # UV_INDEX entries may be named ("name=url"); only the URL matters here.
        uv_extras = [e.split("=", 1)[-1] if "=" in e.split("://", 1)[0] else e for e in _env_list(environ, "UV_INDEX")]
        uv_extras += _env_list(environ, "UV_EXTRA_INDEX_URL")
        extras = uv_extras or _env_list(environ, "PIP_EXTRA_INDEX_URL")
        links = _env_list(environ, "UV_FIND_LINKS", commas=True) or _env_list(environ, "PIP_FIND_LINKS")
        main = main.rstrip("/")
        extra = tuple(e for e in _dedupe([u.rstrip("/") for u in [*extra_index_urls, *extras]]) if e != main)
        return cls(main, extra, _dedupe([*find_links, *links]))

    def installer_env(self, installer: str = "uv") -> dict[str, str]:
        """The variables that make uv (or, for ``"pip"``, pip) see exactly the indexes
        listed here: the same as ``--index-url``, repeated ``--extra-index-url`` (in order:
        uv consults the first extra first) and ``--find-links``.

        Index settings travel in the installer's environment, never on its command line:
        argv is readable by every local user (``ps``), and index URLs may carry
        credentials. uv splits its lists on spaces (indexes) and commas (find-links), pip
        on whitespace, so a find-links location containing its separator is given as a
        percent-encoded URL.
        """
        pip = installer == "pip"
        env = {"PIP_INDEX_URL" if pip else "UV_INDEX_URL": self.index_url}
        if self.extra_index_urls:
            env["PIP_EXTRA_INDEX_URL" if pip else "UV_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        if self.find_links:
            separator = " " if pip else ","
            links = [_list_safe(link, pip) for link in self.find_links]
            env["PIP_FIND_LINKS" if pip else "UV_FIND_LINKS"] = separator.join(links)
        return env

    def redacted(self) -> dict:
        """A JSON-able description safe to print or store (credentials replaced)."""
        return {
            "index_url": redact(self.index_url),
            "extra_index_urls": [redact(u) for u in self.extra_index_urls],
            "find_links": [redact(f) for f in self.find_links],
        }


# ---------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Page:
    """A fetched page: its body, content type and the URL relative links resolve against."""

    body: bytes
    content_type: str
    url: str
    etag: str | None = None
    last_modified: str | None = None


def _short_cause(exc: requests.RequestException) -> str:
    """The part of a requests error a user can act on (e.g. "connection refused")."""
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if errno:  # refused, unknown host, unreachable network: the OS said it best
        return errno.group(1).strip().lower()
    # A read timeout under a retrying adapter arrives as ConnectionError(MaxRetryError).
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS/SSL error"
    return type(exc).__name__


def _retry_policy(retries: int) -> Retry:
    """Retry connect/read errors and 429/5xx with exponential backoff and Retry-After."""
    options = dict(
        total=retries,
        status_forcelist=_RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=0.5,
        respect_retry_after_header=True,
        raise_on_status=False,  # we want the last response, to say which status it was
    )
    try:  # a server asking for an hour-long pause should not hang a bisection
        return Retry(**options, retry_after_max=60)
    except TypeError:  # pragma: no cover - urllib3 before 2.4 has no cap
        return Retry(**options)


class IndexClient:
    """Lists a project's files across the configured indexes, with an HTTP cache.

    ``cache_dir`` (optional) keeps one entry per page; entries are revalidated with
    ``If-None-Match`` / ``If-Modified-Since`` so an unchanged page costs a 304. With
    ``offline=True`` cached pages are used without asking the index at all (a page
    never fetched before then raises :class:`IndexUnreachable`).
    """

    def __init__(
        self,
        config: IndexConfig,
        *,
        cache_dir: Path | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        offline: bool = False,
    ) -> None:
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.timeout = timeout
        self.retries = retries
        self.offline = offline
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"envbisect/{__version__}"
        adapter = HTTPAdapter(max_retries=_retry_policy(retries))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def project_files(self, name: str) -> list[DistFile]:
        """Every wheel and sdist of ``name`` on the main index, extra indexes and find-links.

        A file offered by several sources is listed once (the first source wins, the
        main index first). Raises :class:`UnknownPackage` when no source knows the
        project and :class:`IndexUnreachable` when a source cannot be read.
        """
        project = canonicalize_name(name)
        merged: dict[str, DistFile] = {}
        known = False
        for index in (self.config.index_url, *self.config.extra_index_urls):
            files = self._read(f"{index.rstrip('/')}/{project}/", index)
            if files is not None:
                known = True
                merged.update((f.filename, f) for f in files if f.project == project and f.filename not in merged)
        for link in self.config.find_links:
            for f in self._find_links(link):
                if f.project == project and f.filename not in merged:
                    known, merged[f.filename] = True, f
        if not known:
            where = ", ".join(redact(u) for u in (self.config.index_url, *self.config.extra_index_urls))
            raise UnknownPackage(f"package '{name}' was not found on {where}; check the name or pass --index-url")
        return list(merged.values())

    def file_exists(self, url: str) -> bool | None:
        """Whether a listed file is still served (HEAD): True, False on 404/410, None
        when it cannot tell. Credentials of the configured index on the same host are
        sent, because file URLs are stored without them."""
        auth = None
        target = urlsplit(url)
        for source in (self.config.index_url, *self.config.extra_index_urls, *self.config.find_links):
            parts = urlsplit(source)
            if parts.username and (parts.hostname, parts.port) == (target.hostname, target.port):
                auth = (unquote(parts.username), unquote(parts.password or ""))
                break
        try:
            response = self._session.head(url, auth=auth, allow_redirects=True, timeout=self.timeout)
        except requests.RequestException:
            return None
        if response.status_code in (404, 410):
            return False
        return True if response.ok else None

    # -- sources

    def _find_links(self, link: str) -> list[DistFile]:
        if "://" in link and not link.startswith("file:"):
            files = self._read(link, link)
            if files is None:
                raise IndexUnreachable(f"find-links page {redact(link)} does not exist (HTTP 404); fix --find-links")
            return files
        path = Path(url2pathname(urlsplit(link).path)) if link.startswith("file:") else Path(link)
        if not path.exists():
            raise IndexUnreachable(f"find-links location {redact(link)} does not exist; fix --find-links")
        return self._read(path.resolve().as_uri(), link) or []

    def _read(self, url: str, source: str) -> list[DistFile] | None:
        """Files listed at ``url`` (None when it does not exist); ``source`` labels them."""
        label = redact(source)
        if url.startswith("file:"):
            path = Path(url2pathname(urlsplit(url).path))
            if path.is_dir() and not (path / "index.html").is_file():
                return list_directory(path, index_url=label)
            page = self._read_local(path, url)
        else:
            page = self._fetch(url)
        if page is None:
            return None
        return parse_page(page.body, page.content_type, page_url=page.url, index_url=label)

    @staticmethod
    def _read_local(path: Path, url: str) -> _Page | None:
        if path.is_dir():
            path, url = path / "index.html", url.rstrip("/") + "/"
        if not path.is_file():
            return None
        kind = JSON_TYPE if path.suffix == ".json" else "text/html"
        return _Page(path.read_bytes(), kind, url)

    def _fetch(self, url: str) -> _Page | None:
        """GET a page through the cache; None on 404/410."""
        cached = self._cache_load(url)
        if self.offline:
            if cached is None:
                raise IndexUnreachable(f"no cached copy of {redact(url)} while offline; run once online first")
            return cached
        headers = {"Accept": SIMPLE_ACCEPT}
        if cached is not None and cached.etag:
            headers["If-None-Match"] = cached.etag
        if cached is not None and cached.last_modified:
            headers["If-Modified-Since"] = cached.last_modified
        where = f"package index {redact(url)}"
        try:
            response = self._session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            # `from None`: the chained error may echo the request in full.
            raise IndexUnreachable(
                f"cannot reach {where}: {_short_cause(exc)}; check the network or pass --index-url"
            ) from None
        status = response.status_code
        if status in (404, 410):
            return None
        if status in (401, 403):
            raise IndexUnreachable(f"{where} refused access (HTTP {status}); check the credentials in the index URL")
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        if status == 304 and cached is not None:
            page = replace(cached, etag=etag or cached.etag, last_modified=modified or cached.last_modified)
        elif 200 <= status < 300:
            content_type = response.headers.get("Content-Type", "text/html")
            page = _Page(response.content, content_type, strip_credentials(response.url), etag, modified)
        else:
            cause = f"HTTP {status} after {self.retries} retries" if status in _RETRY_STATUSES else f"HTTP {status}"
            raise IndexUnreachable(f"cannot reach {where}: {cause}; check the network or pass --index-url")
        self._cache_store(url, page)
        return page

    # -- on-disk cache: one file per page, a JSON header line then the raw body

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{strip_credentials(url)}\n{SIMPLE_ACCEPT}".encode()).hexdigest()
        return self.cache_dir / f"{key}.page"

    def _cache_load(self, url: str) -> _Page | None:
        path = self._cache_path(url)
        if path is None:
            return None
        try:
            header, _, body = path.read_bytes().partition(b"\n")
            meta = json.loads(header)
            return _Page(body, meta["content_type"], meta["url"], meta.get("etag"), meta.get("last_modified"))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or corrupt: fetch afresh, it will be overwritten

    def _cache_store(self, url: str, page: _Page) -> None:
        path = self._cache_path(url)
        if path is None:
            return
        meta = {
            "url": page.url,
            "content_type": page.content_type,
            "etag": page.etag,
            "last_modified": page.last_modified,
            "fetched_at": time.time(),
        }
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".page")
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(meta).encode() + b"\n" + page.body)
            os.replace(tmp, path)  # readers see the old entry or the new one, never half
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise CacheError(
                f"cannot write the index cache in {path.parent}: {exc.strerror or exc}; "
                "check its permissions or choose another cache directory"
            ) from exc
