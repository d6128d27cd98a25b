"""Where each installed distribution came from, read from files alone (no import).

Probe layer, standard library only, in the Python 3.8 syntax of the oldest interpreter a
candidate's env may have: this file is run in two ways, with one text.

* In envbisect's own process, on a freshly built env's ``site-packages``
  (:func:`envbisect.envs.built_from`, called by the env's build before its rename into
  place): the result is kept in the env's marker, so a probe costs no read at all.
* As the script an older env's interpreter runs after its recipe
  (:func:`envbisect.sourceprobe.script`: this text plus a call of :func:`main`, which
  prints :func:`scan`'s result), for envs built before the marker kept it.

For every distribution that says anything about its origin, :func:`scan` gives
``version``, ``urls`` (its ``Project-URL`` entries, ``Home-page`` and ``Download-URL``:
the only places a repository may be taken from) and, when the distribution records one,
``revision`` / ``revision_from`` (see :mod:`envbisect.sourceprobe`). Only regular files
are read (a FIFO or device where a ``version.py`` or a ``RECORD`` should be is skipped,
never waited on), and only up to a size.
"""

import json
import os
import re
import stat
import sys
from importlib import metadata

FILES = re.compile(r"^([A-Za-z_]\w*/(?:version|_version|git_version|_git_version|__about__|__init__)\.py),", re.M)
REV = re.compile(r"""(?:\bgit_version|__git_version__|\bgit_revision|__git_revision__|full-revisionid)"""
                 r"""["']?\s*[:=]\s*["']([0-9a-f]{7,40})["']""")
SHA = re.compile(r"^[0-9a-f]{7,40}$")
# Small compiled libraries known to embed their build's ``git describe`` (TensorFlow's
# tf.version.GIT_VERSION, e.g. v2.21.0-rc1-5-ga481b10260d, lives in this 1 MB module).
BINARIES = re.compile(r"^([\w/]*python/client/_pywrap_tf_session[^,/]*\.(?:so|pyd|dylib)),", re.M)
# The largest RECORD read (torch's is about 3 MB): a bigger one, or one that is no regular
# file, reads as empty, so a strange wheel costs a build neither its memory nor its time.
RECORD_MAX = 64 << 20


def _small(path, limit):
    """Whether ``path`` is a regular file of at most ``limit`` bytes (a FIFO or a device is
    never opened)."""
    info = os.stat(str(path))
    return stat.S_ISREG(info.st_mode) and info.st_size <= limit


def _record(dist):
    """The text of ``dist``'s RECORD, or "" when it is missing, no regular file or larger
    than RECORD_MAX (checked where the distribution's directory is known)."""
    base = getattr(dist, "_path", None)
    try:
        if base is not None and not _small(os.path.join(str(base), "RECORD"), RECORD_MAX):
            return ""
    except OSError:
        return ""
    return dist.read_text("RECORD") or ""


def revision(dist):
    try:
        text = dist.read_text("direct_url.json")
        commit = ((json.loads(text) or {}).get("vcs_info") or {}).get("commit_id") if text else None
        if commit and SHA.match(commit):
            return commit, "direct_url.json"
    except Exception:
        pass
    # RECORD's text, not dist.files: building a path object per line of torch's RECORD
    # costs more than the whole rest of the read. Read once for both searches.
    record = _record(dist)
    for name in FILES.findall(record)[:16]:
        try:
            located = dist.locate_file(name)
            found = _small(located, 262144) and REV.search(located.read_text(encoding="utf-8", errors="replace"))
        except Exception:
            continue
        if found:
            return found.group(1), name
    return described(dist, record)


def described(dist, record):
    """The commit of a ``git describe`` string for this very version (v<version>...-g<sha>)
    embedded in one of the small libraries BINARIES names (listed in ``record``)."""
    base = re.match(r"\d+(?:\.\d+)*", dist.metadata.get("Version") or "")
    if base is None:
        return None, None
    pattern = re.compile(rb"v" + re.escape(base.group().encode()) + rb"[\w.-]{0,40}?-g([0-9a-f]{7,40})\b")
    for name in BINARIES.findall(record)[:4]:
        try:
            located = dist.locate_file(name)
            found = _small(located, 16 << 20) and pattern.search(located.read_bytes())
        except Exception:
            continue
        if found:
            return found.group(1).decode(), name
    return None, None


def describe(dist):
    meta = dist.metadata
    urls = {}
    for entry in meta.get_all("Project-URL") or ():
        label, _, url = entry.partition(",")
        if url.strip():
            urls[label.strip()] = url.strip()
    for field in ("Home-page", "Download-URL"):
        if meta.get(field) and meta.get(field) != "UNKNOWN":
            urls.setdefault(field, meta.get(field).strip())
    rev, where = revision(dist)
    info = {"version": meta.get("Version")}
    if urls:
        info["urls"] = urls
    if rev:
        info["revision"], info["revision_from"] = rev, where
    return meta.get("Name"), info


def scan(path=None):
    """Every distribution on ``path`` (a list of directories; None: ``sys.path``) that
    names a URL or a revision: canonical name -> its description."""
    out = {}
    for dist in (metadata.distributions() if path is None else metadata.distributions(path=path)):
        try:
            name, info = describe(dist)
        except Exception:
            continue
        if name and (info.get("urls") or info.get("revision")):
            out[re.sub(r"[-_.]+", "-", name).lower()] = info
    return out


def main():
    sys.stdout.write(json.dumps({"dists": scan()}, sort_keys=True))
