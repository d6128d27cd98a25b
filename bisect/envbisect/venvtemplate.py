"""The empty virtual environment every uv build starts from: made once per base interpreter
by ``uv venv --relocatable``, copied for each build.

Execution layer, used by :class:`envbisect.envs.EnvManager`. A relocatable venv holds
nothing that depends on where it lives (two made at different paths are identical, file
for file and link for link), so a copy of one made earlier is exactly the venv ``uv venv``
would make at the new path. The copy is a dozen small files and links in-process; ``uv
venv`` is a process of about 0.03 CPU-seconds, a third of a small build's installer time,
and a ``--jobs 3`` round builds a dozen envs ahead beside its probes.

The template lives beside the envs as ``.template<hash>`` (:data:`PREFIX`; the hash
covers the interpreter's path, version and implementation and the uv executable, so a new
Python or uv makes a new one). It is made in ``.tmp-template<tag>-<owner>-<random>`` and renamed
into place under ``.locks/template<tag>.lock``, so it is complete or absent; a killed
making leaves a ``.tmp-`` directory the sweep removes like any build's. Its name starts
with a dot, so it is never listed, reused or pruned as an env; it counts with the
installer cache and goes with it (``cache prune`` when environments alone cannot reach the
size, ``cache clear``: :meth:`envbisect.envcache.EnvCache.remove_templates`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from envbisect import procs


#: Templates are ``<envs>/.<tag>`` with tags starting with this.
PREFIX = "template"


def template_tag(interpreter, uv: str) -> str:
    """What the template's content depends on: the base interpreter and the uv that made it."""
    text = "\0".join((interpreter.path, interpreter.version, interpreter.implementation, uv))
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:12]


def copy_empty_venv(root: Path, tag: str, make: Callable[[Path], None], dest: Path) -> None:
    """Copy the template ``tag`` to ``dest`` (absent), having ``make(path)`` create it with
    ``uv venv`` first if it does not exist yet (its failure propagates, as a build's would).
    A template that a prune removed during the copy is made again, once."""
    template = root / f".{tag}"
    for attempt in (0, 1):
        if not (template / "pyvenv.cfg").is_file():
            _make(root, tag, template, make)
        try:
            shutil.copytree(template, dest, symlinks=True)
            return
        except OSError:
            shutil.rmtree(dest, ignore_errors=True)
            if attempt or (template / "pyvenv.cfg").is_file():
                raise  # not a template removed under the copy


def _make(root: Path, tag: str, template: Path, make: Callable[[Path], None]) -> None:
    with FileLock(str(lock_path(root, tag))):
        if (template / "pyvenv.cfg").is_file():
            return
        shutil.rmtree(template, ignore_errors=True)  # not one of ours: ours are renamed in whole
        fresh = root / f".tmp-{tag}-{procs.owner_stamp()}-{uuid.uuid4().hex[:6]}"
        try:
            make(fresh)
            os.replace(fresh, template)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)


def lock_path(root: Path, tag: str) -> Path:
    """The lock a template is made and removed under (``<root>/.locks/<tag>.lock``)."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{tag}.lock"
