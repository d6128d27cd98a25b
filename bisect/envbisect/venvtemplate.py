"""The empty virtual environment every uv build starts from: made once per base interpreter
by ``uv venv --relocatable``, copied for each build.

Execution layer, used by :class:`envbisect.envs.EnvManager`. A relocatable venv holds
nothing that depends on where it lives (two made at different paths are identical, file
for file and link for link), so a copy of one made earlier is exactly the venv ``uv venv``
would make at the new path. The copy is a dozen small files and links in-process; ``uv
venv`` is a process of about 0.03 CPU-seconds, a third of a small build's installer time,
and a ``--jobs 3`` round builds a dozen envs ahead beside its probes.

The template lives beside the envs as ``.template-<tag>`` (the tag hashes the
interpreter's path, version and implementation and the uv executable, so a new Python or
uv makes a new one). It is made in ``.tmp-template<tag>-<owner>-<random>`` and renamed
into place under ``.locks/template<tag>.lock``, so it is complete or absent; a killed
making leaves a ``.tmp-`` directory the sweep removes like any build's. Its name starts
with a dot, so it is never listed, reused or pruned as an env.
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


def template_tag(interpreter, uv: str) -> str:
    """What the template's content depends on: the base interpreter and the uv that made it."""
    text = "\0".join((interpreter.path, interpreter.version, interpreter.implementation, uv))
    return "template" + hashlib.sha256(text.encode()).hexdigest()[:12]


def copy_empty_venv(root: Path, tag: str, make: Callable[[Path], None], dest: Path) -> None:
    """Copy the template ``tag`` to ``dest`` (absent), having ``make(path)`` create it with
    ``uv venv`` first if it does not exist yet (its failure propagates, as a build's would)."""
    template = root / f".{tag}"
    if not (template / "pyvenv.cfg").is_file():
        locks = root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{tag}.lock")):
            if not (template / "pyvenv.cfg").is_file():
                shutil.rmtree(template, ignore_errors=True)  # not one of ours: ours are renamed in whole
                fresh = root / f".tmp-{tag}-{procs.owner_stamp()}-{uuid.uuid4().hex[:6]}"
                try:
                    make(fresh)
                    os.replace(fresh, template)
                finally:
                    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(template, dest, symlinks=True)
