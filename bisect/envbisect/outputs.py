"""A recipe's named outputs: collected after each run, kept content-addressed in the cache,
compared with a reference release's in the candidate's own environment.

Probe layer. A recipe writes each output as one file into ``$ENVBISECT_OUTPUTS`` (a fresh,
empty directory per run); the file's stem is the output's name:

* ``NAME.npy``  an array (``numpy.save``); its shape and dtype are read from the ``.npy``
  header here, without numpy;
* ``NAME.json`` a number or a (nested) list of numbers;
* any other file: opaque bytes, equal to the reference's or not.

Each file is stored once under ``<cache>/outputs/<hash[:2]>/<hash>`` (sha256 of its
bytes), so identical outputs of many probes cost one copy, and a probe row keeps only the
*manifest* (name -> hash, kind, shape, dtype, size). :func:`compare_in_env` measures the
differences with the candidate environment's interpreter (:data:`COMPARE`, run with
``-c``): envbisect never imports numpy, the environment under test already has it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from envbisect import foreignjson, procs
from envbisect.plainfile import open_plain

#: Environment variable naming the directory a recipe writes its outputs into.
OUTPUTS_ENV = "ENVBISECT_OUTPUTS"
#: At most this many outputs per run, this many bytes each (more is noted, not stored).
MAX_OUTPUTS = 64
MAX_BYTES = 512 * 1024 * 1024
#: A ``.json`` output is parsed here for its shape: at most this big (parsed, a list of
#: numbers takes about eight times its text in memory; arrays belong in ``.npy`` files).
JSON_MAX_BYTES = 64 * 1024 * 1024
#: The longest ``.npy`` header read (numpy's own ``max_header_size`` default): a longer
#: one is not parsed, and the file is opaque bytes.
NPY_HEADER_MAX = 10000
COMPARE_TIMEOUT_S = 300.0

#: Measures max |c - r| and max |c - r| / |r| per output pair; reads a JSON request on stdin
#: ({name: [kind, reference path, candidate path]}), prints {name: {max_abs, max_rel}, {problem}
#: (a structural divergence: another shape or length) or {error} (the comparison itself failed,
#: e.g. the environment has no numpy: no evidence either way)}.
COMPARE = r'''
import json, math, sys
req = json.load(sys.stdin)
def flat(v):
    if isinstance(v, list):
        for x in v:
            yield from flat(x)
    else:
        yield v
def pair(c, r):
    if isinstance(c, bool) or isinstance(r, bool) or not isinstance(c, (int, float)) or not isinstance(r, (int, float)):
        return (0.0, 0.0) if c == r else (math.inf, math.inf)
    if math.isnan(c) or math.isnan(r):
        return (0.0, 0.0) if math.isnan(c) and math.isnan(r) else (math.inf, math.inf)
    if c == r:
        return (0.0, 0.0)
    d = abs(c - r)
    return (d, d / abs(r) if r else math.inf)
def from_json(rp, cp):
    r, c = (list(flat(json.load(open(p)))) for p in (rp, cp))
    if len(r) != len(c):
        return {"problem": "has %d values where the reference has %d" % (len(c), len(r))}
    worst = [0.0, 0.0]
    for a, b in zip(c, r):
        d = pair(a, b)
        worst = [max(worst[0], d[0]), max(worst[1], d[1])]
    return {"max_abs": worst[0], "max_rel": worst[1]}
def from_npy(rp, cp):
    import numpy as np
    r, c = np.load(rp, allow_pickle=False), np.load(cp, allow_pickle=False)
    if r.shape != c.shape:
        return {"problem": "shape %s where the reference has %s" % (c.shape, r.shape)}
    if r.dtype.kind not in "biufc" or c.dtype.kind not in "biufc":
        same = r.dtype == c.dtype and bool(np.array_equal(r, c))
        return {"max_abs": 0.0 if same else math.inf, "max_rel": 0.0 if same else math.inf}
    r, c = r.astype(np.complex128 if "c" in r.dtype.kind + c.dtype.kind else np.float64), c.astype(
        np.complex128 if "c" in r.dtype.kind + c.dtype.kind else np.float64)
    if r.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0}
    nan_r, nan_c = np.isnan(r), np.isnan(c)
    if (nan_r != nan_c).any():
        return {"max_abs": math.inf, "max_rel": math.inf}
    d = np.abs(np.where(nan_r, 0, c - r))
    d = np.where(np.isinf(r) & np.isinf(c) & (r == c), 0, d)
    d = np.where(np.isnan(d), math.inf, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(d == 0, 0.0, d / np.abs(r))
    return {"max_abs": float(d.max()), "max_rel": float(np.nan_to_num(rel, nan=math.inf).max())}
out = {}
for name, (kind, rp, cp) in req.items():
    try:
        out[name] = from_npy(rp, cp) if kind == "npy" else from_json(rp, cp) if kind == "json" else (
            {"max_abs": math.inf, "max_rel": math.inf})
    except Exception as exc:
        out[name] = {"error": "cannot be compared here: %s: %s" % (type(exc).__name__, exc)}
json.dump(out, sys.stdout)
'''


def store_root(cache_root: Path) -> Path:
    return cache_root / "outputs"


def path_of(root: Path, digest: str) -> Path:
    return root / digest[:2] / digest


def _npy_header(fh: BinaryIO) -> tuple[list[int], str] | None:
    """(shape, dtype) from a ``.npy`` file's header (a Python literal), or None (then the
    file is opaque bytes): a truncated file, or a header longer than numpy itself reads
    (:data:`NPY_HEADER_MAX`) or that is no such literal."""
    fh.seek(0)
    if fh.read(6) != b"\x93NUMPY" or len(version := fh.read(2)) < 2:
        return None
    size = int.from_bytes(fh.read(2 if version[0] == 1 else 4), "little")
    if size > NPY_HEADER_MAX:
        return None
    try:
        header = ast.literal_eval(fh.read(size).decode("latin-1"))
        return [int(n) for n in header["shape"]], str(header["descr"])
    except (ValueError, SyntaxError, KeyError, TypeError, RecursionError, MemoryError):
        return None


def _json_shape(value) -> list[int] | None | bool:
    """The shape of a number (None) or a rectangular nested list; False when neither."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict)):
        return False
    if not isinstance(value, list):
        return None
    shapes = [_json_shape(v) for v in value]
    if any(s is False for s in shapes) or any(s != shapes[0] for s in shapes):
        return False
    return [len(value), *(shapes[0] or [])] if shapes else [0]


def _hash(fh: BinaryIO) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _entry(fh: BinaryIO, suffix: str) -> dict:
    """The manifest entry of one open output file (kind, shape, dtype, size, hash)."""
    entry: dict = {"kind": "bytes", "bytes": os.fstat(fh.fileno()).st_size, "hash": _hash(fh)}
    if suffix == ".npy" and (header := _npy_header(fh)) is not None:
        entry.update(kind="npy", shape=header[0], dtype=header[1])
    elif suffix == ".json":
        fh.seek(0)
        try:
            shape = _json_shape(foreignjson.loads(fh.read()))
        except (ValueError, RecursionError):  # not JSON; or nested so deep that measuring it overflows
            shape = False
        if shape is not False:
            entry.update(kind="json", shape=shape)
    return entry


def collect(directory: Path, root: Path) -> tuple[dict, str | None]:
    """Store every output file of ``directory`` under ``root``; (manifest, note on what was left out)."""
    manifest: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}
    if directory.is_symlink():  # the recipe replaced it: what it points to is not its output
        return manifest, f"left out: ${OUTPUTS_ENV} was replaced by a symbolic link"
    try:
        files = sorted(p for p in directory.iterdir()) if directory.is_dir() else []
    except PermissionError as exc:  # the recipe took its own read permission away
        return manifest, f"left out: ${OUTPUTS_ENV} could not be listed ({exc.strerror})"
    for path in files:
        name = path.stem if path.suffix in (".npy", ".json") else path.name
        fh = None
        try:
            if (why := _left_out_why(path, name, manifest)) is None:
                fh = open_plain(path)
                why = "not a plain file" if fh is None else _too_big(os.fstat(fh.fileno()).st_size, path.suffix)
        except (PermissionError, FileNotFoundError) as exc:  # made unreadable, or removed by a leftover child
            why = f"unreadable: {exc.strerror}"
        if why is not None:
            if fh is not None:
                fh.close()
            skipped.setdefault(why, []).append(path.name)
            continue
        with fh:
            entry = _entry(fh, path.suffix)
            _keep(fh, path_of(root, entry["hash"]))  # a full disk here ends the run as one does anywhere
        manifest[name] = entry
    return manifest, _left_out(skipped)


def _left_out_why(path: Path, name: str, manifest: Mapping[str, dict]) -> str | None:
    """Why :func:`collect` does not keep ``path`` (output ``name``), or None to keep it."""
    if path.is_symlink() or not path.is_file():
        return "not a plain file"
    if name in manifest:
        return "a second file of one output name"
    if len(manifest) >= MAX_OUTPUTS:
        return f"more than {MAX_OUTPUTS} outputs"
    return None


def _too_big(size: int, suffix: str) -> str | None:
    """Why an output of ``size`` bytes is not kept (measured on the open file: a bigger one
    swapped in after the listing is measured too), or None."""
    if size > MAX_BYTES:
        return f"over {MAX_BYTES >> 20} MiB"
    if suffix == ".json" and size > JSON_MAX_BYTES:
        return f"JSON over {JSON_MAX_BYTES >> 20} MiB: save a large array as .npy"
    return None


#: A note on left-out files names at most this many of each kind (a recipe may write thousands).
NOTE_NAMES = 5


def _left_out(skipped: Mapping[str, list[str]]) -> str | None:
    """One line on the files :func:`collect` left out, by reason, a few names each (escaped:
    a file name may hold a newline), with how many more there were."""
    if not skipped:
        return None
    parts = []
    for why, names in skipped.items():
        shown = ", ".join(repr(n)[1:-1] for n in names[:NOTE_NAMES])
        more = f" and {len(names) - NOTE_NAMES} more" if len(names) > NOTE_NAMES else ""
        parts.append(f"{shown}{more} ({why})")
    return "left out: " + "; ".join(parts)


def _keep(source: BinaryIO, target: Path) -> None:
    """Copy the open ``source`` to its content address (atomically; an existing copy is the
    same bytes)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    source.seek(0)
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: no partial copy stays behind
        raise


def compare_in_env(python: Path, names: list[str], outputs: Mapping, reference: Mapping, root: Path,
                   environ: Mapping[str, str]) -> tuple[dict, str | None]:
    """Measure ``names`` of ``outputs`` against ``reference`` (manifests) with the
    environment's ``python``; ({name: differences}, a note when the comparison failed)."""
    request = {n: [outputs[n]["kind"], str(path_of(root, reference[n]["hash"])), str(path_of(root, outputs[n]["hash"]))]
               for n in names}
    try:
        proc = procs.run([str(python), "-c", COMPARE], input=json.dumps(request), capture_output=True, text=True,
                         env=dict(environ), timeout=COMPARE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"comparison did not finish: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        hint = "; the recipe's environment needs numpy to compare .npy outputs" if "numpy" in last else ""
        return {}, f"comparison failed: {last}{hint}"
    try:
        return json.loads(proc.stdout), None
    except ValueError:
        return {}, "comparison printed no JSON"


def usage(root: Path) -> tuple[int, int]:
    """(files, bytes) stored under ``root``."""
    files = [p for p in root.glob("??/*") if p.is_file()] if root.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def prune(root: Path, keep: set[str]) -> tuple[int, int]:
    """Remove stored outputs no recorded probe names (their runs are gone); (files, bytes) removed."""
    removed = freed = 0
    for path in (p for p in root.glob("??/*") if p.is_file()) if root.is_dir() else ():
        if path.name not in keep and not path.name.startswith("."):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
            removed += 1
    return removed, freed


def scratch_dir(scratch: Path) -> Path:
    """A fresh, empty outputs directory for one run, named like a probe's scratch directory
    (so a run after a ``kill -9`` sweeps it away)."""
    import tempfile

    from envbisect.runner import SCRATCH_PREFIX

    scratch.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{procs.owner_stamp()}-out-", dir=scratch))


def gather(directory: Path, root: Path, raw: dict, reference: Mapping | None, python: Path,
           environ: Mapping[str, str]) -> dict:
    """What a run's outputs add to its raw result: the manifest, a note, and (against a
    reference, for a recipe that exited 0 or 1) the comparison of what differs from it."""
    from envbisect.compare import Reference, to_compare

    try:
        manifest, note = collect(directory, root)
    finally:
        if directory.is_symlink():
            directory.unlink()
        else:
            shutil.rmtree(directory, ignore_errors=True)
    extra: dict = {"outputs": manifest or None, "outputs_note": note}
    if reference is None or raw.get("exit_code") not in (0, 1) or not manifest:
        return extra
    ref = Reference(reference["version"], reference["outputs"])
    names = to_compare(manifest, ref)
    measured, problem = compare_in_env(python, names, manifest, ref.outputs, root, environ) if names else ({}, None)
    extra["comparison"] = {"reference": ref.digest, "outputs": measured, **({"note": problem} if problem else {})}
    return extra
