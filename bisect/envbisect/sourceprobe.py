"""Read, inside a candidate's environment, where each installed distribution came from.

Probe layer. After the recipe ran (first attempt only), :func:`read_sources` starts the
env's interpreter once more on :data:`SCRIPT`, which prints, for every installed
distribution that says anything about its origin:

* ``version``;
* ``urls``: its ``Project-URL`` entries (label -> URL), ``Home-page`` and ``Download-URL``
  (the only places a repository may be taken from: a link is never guessed);
* ``revision`` and ``revision_from``: the source commit it was built from, when the
  distribution records one: ``direct_url.json`` (``vcs_info.commit_id``: installed from a
  VCS URL), else an assignment such as ``git_version = '<sha>'`` (torch's
  ``torch/version.py``, torch nightlies included), ``git_revision`` (numpy, scipy),
  ``__git_version__`` or versioneer's ``"full-revisionid"`` in one of the distribution's
  own top-level ``version.py`` / ``_version.py`` / ``git_version.py`` / ``__about__.py`` /
  ``__init__.py`` files.

Nothing is imported: the files are read as text (listed by the distribution's
``RECORD``), so a framework that takes seconds to import costs nothing here. A revision
only a compiled library knows is read from the bytes of the one small library known to
hold it: TensorFlow's ``tf.version.GIT_VERSION`` (``v2.21.0-rc1-5-ga481b10260d``) is in
``tensorflow/python/client/_pywrap_tf_session.so`` (about 1 MB), and is taken only when
it describes the installed version. Anything else falls back to release tags
(:mod:`envbisect.sourcerange`).

The script runs with the recipe's scrubbed environment and a timeout, and can never fail
a probe: any error (a crash, a timeout, output that is not JSON) yields an ``error`` and
no distributions, which reads as "nothing known". The result is stored with the probe
row (``source``), so a reused probe brings it along for free.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from envbisect import procs

#: Seconds the read may take at most (never more than the recipe's own timeout).
TIMEOUT_S = 60.0
#: Bytes of output kept (a huge environment still prints a few hundred kilobytes at most).
MAX_OUTPUT = 2 << 20

#: The script run with ``python -c`` in the candidate's env. Python 3.8+ syntax; only the
#: standard library; prints one JSON object ``{"dists": {name: {...}}}``.
SCRIPT = r'''
import json, re, sys
from importlib import metadata

FILES = re.compile(r"^([A-Za-z_]\w*/(?:version|_version|git_version|_git_version|__about__|__init__)\.py),", re.M)
REV = re.compile(r"""(?:\bgit_version|__git_version__|\bgit_revision|__git_revision__|full-revisionid)"""
                 r"""["']?\s*[:=]\s*["']([0-9a-f]{7,40})["']""")
SHA = re.compile(r"^[0-9a-f]{7,40}$")
# Small compiled libraries known to embed their build's ``git describe`` (TensorFlow's
# tf.version.GIT_VERSION, e.g. v2.21.0-rc1-5-ga481b10260d, lives in this 1 MB module).
BINARIES = re.compile(r"^([\w/]*python/client/_pywrap_tf_session[^,/]*\.(?:so|pyd|dylib)),", re.M)


def revision(dist):
    try:
        text = dist.read_text("direct_url.json")
        commit = ((json.loads(text) or {}).get("vcs_info") or {}).get("commit_id") if text else None
        if commit and SHA.match(commit):
            return commit, "direct_url.json"
    except Exception:
        pass
    # RECORD's text, not dist.files: building a path object per line of torch's RECORD
    # costs more than the whole rest of the read.
    for name in FILES.findall(dist.read_text("RECORD") or "")[:16]:
        try:
            located = dist.locate_file(name)
            if located.stat().st_size > 262144:
                continue
            found = REV.search(located.read_text(encoding="utf-8", errors="replace"))
        except Exception:
            continue
        if found:
            return found.group(1), name
    return described(dist)


def described(dist):
    """The commit of a ``git describe`` string for this very version (v<version>...-g<sha>)
    embedded in one of the small libraries BINARIES names."""
    base = re.match(r"\d+(?:\.\d+)*", dist.metadata.get("Version") or "")
    if base is None:
        return None, None
    pattern = re.compile(rb"v" + re.escape(base.group().encode()) + rb"[\w.-]{0,40}?-g([0-9a-f]{7,40})\b")
    for name in BINARIES.findall(dist.read_text("RECORD") or "")[:4]:
        try:
            located = dist.locate_file(name)
            if located.stat().st_size > 16 << 20:
                continue
            found = pattern.search(located.read_bytes())
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


out = {}
for dist in metadata.distributions():
    try:
        name, info = describe(dist)
    except Exception:
        continue
    if name and (info.get("urls") or info.get("revision")):
        out[re.sub(r"[-_.]+", "-", name).lower()] = info
sys.stdout.write(json.dumps({"dists": out}, sort_keys=True))
'''


def read_sources(python: Path, environ: Mapping[str, str], timeout: float) -> dict:
    """Run :data:`SCRIPT` with ``python`` (the env's) and ``environ`` (the recipe's
    scrubbed one); ``{"dists": {...}}``, or ``{"dists": {}, "error": why}`` on any failure."""
    try:
        proc = procs.run([str(python), "-c", SCRIPT], capture_output=True, timeout=min(timeout, TIMEOUT_S),
                         env=dict(environ), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"dists": {}, "error": f"reading the sources timed out after {min(timeout, TIMEOUT_S):g} s"}
    except OSError as exc:
        return {"dists": {}, "error": f"cannot start the environment's python ({exc.strerror or exc})"}
    if proc.returncode != 0:
        return {"dists": {}, "error": f"reading the sources exited {proc.returncode}"}
    try:
        data = json.loads(proc.stdout[:MAX_OUTPUT].decode("utf-8", errors="replace"))
    except ValueError:
        return {"dists": {}, "error": "reading the sources printed no JSON"}
    dists = data.get("dists") if isinstance(data, dict) else None
    return {"dists": dists} if isinstance(dists, dict) else {"dists": {}, "error": "unexpected output"}
