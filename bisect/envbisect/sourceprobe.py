"""What each installed distribution of a candidate's environment was built from.

Probe layer. An env is read once, when it is built: :mod:`envbisect.sourcescan` runs in
this process over the new env's ``site-packages`` (:meth:`envbisect.envs.EnvManager`
keeps the result in the env's marker), so a probe costs nothing for it; an env built by an
earlier envbisect, whose marker lacks it, is read after its recipe (first attempt only) by
:func:`read_sources`, which starts the env's interpreter once more on :func:`script`
(before, every probe did, for 100–250 ms on its critical path). For every installed
distribution that says anything about its origin the read gives:

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
no distributions, which reads as "nothing known"; so does a read at build time that fails
(the env is built all the same). The result is stored with the probe row (``source``), so
a reused probe brings it along for free."""

from __future__ import annotations

import inspect
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from envbisect import procs, sourcescan

#: Seconds the read may take at most (never more than the recipe's own timeout).
TIMEOUT_S = 60.0
#: Bytes of output kept (a huge environment still prints a few hundred kilobytes at most).
MAX_OUTPUT = 2 << 20


def script() -> str:
    """The script run with ``python -c`` in an env whose marker lacks what it was built
    from (built by an earlier envbisect): :mod:`envbisect.sourcescan`'s text, printing one
    JSON object ``{"dists": {name: {...}}}`` (the text comes through the module's loader, so
    an installed copy inside a zip serves it too)."""
    return inspect.getsource(sourcescan) + "\nmain()\n"


def read_sources(python: Path, environ: Mapping[str, str], timeout: float) -> dict:
    """Run :func:`script` with ``python`` (the env's) and ``environ`` (the recipe's
    scrubbed one); ``{"dists": {...}}``, or ``{"dists": {}, "error": why}`` on any failure."""
    try:
        proc = procs.run([str(python), "-c", script()], capture_output=True, timeout=min(timeout, TIMEOUT_S),
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
