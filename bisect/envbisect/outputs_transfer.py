"""Outputs between the coordinator and a Dask worker (``--diverge-from`` with ``--executor dask``).

Execution layer. Two directions, both content-addressed (:mod:`envbisect.outputs`):

* **To the worker:** the reference release's output files a probe is compared with. The
  Dask executor reads them once per reference from the coordinator's cache
  (:func:`reference_files`) and scatters them to the cluster once (one Dask future per
  reference, handed to every task of the run); a worker checks each file's sha256 on
  arrival and stores it in its own cache (:func:`receive`) before it runs the recipe.
* **Back to the coordinator:** the outputs a worker's run wrote, so the coordinator's
  cache holds what its database names (``cache info``, reports, a later run that uses
  that probe as its reference). Only what the coordinator lacks travels
  (:func:`pack`): an output byte-identical to the reference's stays behind. The
  coordinator checks the sha256 again and stores them (:func:`receive`).

Bounded: each output is at most :data:`envbisect.outputs.MAX_BYTES` already, and at most
:data:`MAX_SHIPPED_BYTES` travel per reference or per probe (everything goes through
Dask's messages and the coordinator's memory). A reference larger than that stops the run
with one line; a probe's outputs beyond it stay on the worker and the probe's
``outputs_note`` says which (its comparison, made on the worker, is stored all the same).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from envbisect.errors import ConfigError, ExecutorError
from envbisect.outputs import path_of

#: The most bytes of outputs that travel per reference (to workers) or per probe (back).
MAX_SHIPPED_BYTES = 1024 * 1024 * 1024


def reference_files(root: Path, reference: Mapping) -> dict[str, bytes]:
    """The reference's output files (hash -> bytes) from the coordinator's store ``root``,
    for a worker; one :class:`ConfigError` line when one is missing or they are too big."""
    entries = {e["hash"]: name for name, e in (reference.get("outputs") or {}).items() if e.get("hash")}
    total = sum(int(e.get("bytes") or 0) for e in (reference.get("outputs") or {}).values())
    if total > MAX_SHIPPED_BYTES:
        raise ConfigError(f"the reference {reference.get('version')}'s outputs total {total >> 20} MiB, more than "
                          f"--executor dask ships to its workers ({MAX_SHIPPED_BYTES >> 20} MiB); write smaller "
                          "outputs or run the reference comparison with the local executor")
    files = {}
    for digest, name in entries.items():
        try:
            files[digest] = path_of(root, digest).read_bytes()
        except OSError:
            raise ConfigError(f"the reference {reference.get('version')}'s output {name} is not in this cache "
                              f"({root}); run the reference release on this machine once (`bisect check RECIPE "
                              f"--with PKG=={reference.get('version')} --no-reuse`) to store it") from None
    return files


def receive(root: Path, files: Mapping[str, bytes]) -> None:
    """Store ``files`` (hash -> bytes) under ``root`` by content, each one not stored yet
    checked against its sha256 first (:class:`ExecutorError` when one does not match:
    nothing of it is kept)."""
    for digest, data in files.items():
        target = path_of(root, digest)
        if target.exists():  # checked when it was stored: every task of a run brings the same files
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            raise ExecutorError(f"an output file ({digest[:12]}) arrived damaged (its sha256 differs); "
                                "run the same command again (the run resumes)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, target)


def pack(root: Path, manifest: Mapping | None, present: Iterable[str] = ()) -> tuple[dict[str, bytes], list[str]]:
    """The output files of ``manifest`` to send back from a worker (hash -> bytes), leaving
    out those whose hash is in ``present`` (the coordinator has them); and the names left
    behind because :data:`MAX_SHIPPED_BYTES` was reached."""
    have, files, left, total = set(present), {}, [], 0
    for name, entry in sorted((manifest or {}).items()):
        digest = entry.get("hash")
        if not digest or digest in have or digest in files:
            continue
        size = int(entry.get("bytes") or 0)
        if total + size > MAX_SHIPPED_BYTES:
            left.append(name)
            continue
        files[digest], total = path_of(root, digest).read_bytes(), total + size
    return files, left
