"""Numerical verdicts: outputs compared with a reference release, and failure signatures.

Real parts: a loopback index serving wheels of ``drift`` built here plus a real numpy
wheel (see :mod:`support.numpy_wheel`; the tests skip when none can be had), real uv
installs, the real CLI in subprocesses, a real results database.

``drift`` 1.0 .. 1.7: from 1.5 on, one output of three (the (256, 256) array ``logits``)
is scaled by 1 + 1e-3; ``loss`` and ``labels`` never change.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from support.cli import assert_one_line_error, bisect_cli, cli_env, write_recipe
from support.index_server import LocalIndex
from support.numpy_wheel import numpy_wheel
from support.wheels import build_wheel

from envbisect.signatures import NOT_SIGNATURE

VERSIONS = [f"1.{m}" for m in range(8)]
FIRST_BAD = "1.5"
#: Releases whose recipe below fails the wrong way (an out-of-memory message).
OOM = ("1.2", "1.3", "1.4")
START = datetime(2025, 1, 6, tzinfo=timezone.utc)

OUTPUTS_BODY = """
import json, os, pathlib
import numpy as np
import drift
out = pathlib.Path(os.environ["ENVBISECT_OUTPUTS"])
x = np.random.default_rng(0).standard_normal((256, 256))
np.save(out / "logits.npy", x * drift.SCALE)
(out / "loss.json").write_text(json.dumps(float(np.abs(x).sum())))
(out / "labels.json").write_text(json.dumps([[1, 2], [3, 4]]))
with open({side!r}, "a") as side:
    side.write(drift.__version__ + "\\n")
"""

SIGNATURE_BODY = """
import sys
import drift
if drift.__version__ in {oom!r}:
    print("RuntimeError: CUDA out of memory", file=sys.stderr)
    sys.exit(1)
if drift.SCALE != 1.0:
    print("ValueError: shape mismatch in fused kernel", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def drift_index(tmp_path_factory):
    wheel = numpy_wheel()
    if wheel is None:
        pytest.skip("no numpy wheel for this interpreter could be had (offline?)")
    dists = tmp_path_factory.mktemp("drift-dists")
    index = LocalIndex(tmp_path_factory.mktemp("drift-index")).start()
    index.add(wheel, upload_time=START - timedelta(days=30))
    for week, v in enumerate(VERSIONS):
        scale = "1.001" if v >= FIRST_BAD else "1.0"
        body = f'__version__ = "{v}"\nSCALE = {scale}\n'
        index.add(build_wheel(dists, "drift", v, files={"drift/__init__.py": body}),
                  upload_time=START + timedelta(weeks=week))
    yield index
    index.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, drift_index):
    """One cache for the module (envs and outputs are shared between tests)."""
    root = tmp_path_factory.mktemp("numerics")
    return root, root / "cache"


def _run(root: Path, cache: Path, index: LocalIndex, recipe: Path, *args: str, check_json: bool = True):
    return bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(cache), "--json", *args,
                      cwd=root, check_json=check_json)


def _rerun(root: Path, cache: Path, run_id: int, version: str):
    """``bisect show RUN --rerun SEQ --json`` of the run's probe of ``version``."""
    shown = bisect_cli("show", str(run_id), "--json", "--cache-dir", str(cache), cwd=root, check_json=True)
    seq = next(r["seq"] for r in shown.json["probe_rows"] if r["version"] == version)
    return bisect_cli("show", str(run_id), "--rerun", str(seq), "--json", "--cache-dir", str(cache), cwd=root,
                      check_json=True)


def _probe_rows(cache: Path) -> int:
    with sqlite3.connect(cache / "results.db") as db:
        return db.execute("SELECT COUNT(*) FROM probes WHERE reused_from IS NULL").fetchone()[0]


#: Runs ``bisect`` through the library entry point (no re-exec) and writes the numpy
#: modules this process imported, at exit, to the file named first.
_DRIVER = """
import atexit, json, sys
path = sys.argv.pop(1)
atexit.register(lambda: open(path, "w").write(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "numpy"))))
sys.argv[0] = "bisect"
from envbisect.cli import main
main()
"""


def test_one_output_of_three_diverges_then_a_looser_rtol_rejudges_offline(shared, drift_index):
    root, cache = shared
    side = root / "side-effects.txt"
    recipe = write_recipe(root / "outputs.py", OUTPUTS_BODY.format(side=str(side)), package="drift",
                          deps=("drift", "numpy"))
    imported = root / "numpy-modules.json"
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(imported), "run", str(recipe), "--index-url",
                           drift_index.url, "--cache-dir", str(cache), "--json", "--diverge-from", "1.0"],
                          cwd=root, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = json.loads(proc.stdout)
    assert json.loads(imported.read_text()) == [], "numpy was imported by envbisect itself"
    assert first["first_bad"] == FIRST_BAD and first["last_good"] == "1.4"
    assert first["diverged_outputs"] == ["logits"], "the report names the one output that changed"
    assert first["reference"]["version"] == "1.0" and set(first["reference"]["outputs"]) == {"logits", "loss", "labels"}
    assert first["reference"]["outputs"]["logits"]["shape"] == [256, 256]
    bad = next(p for p in first["probes"] if p["version"] == FIRST_BAD)
    assert bad["verdict"] == "bad" and "logits" in bad["reason"] and "loss" not in bad["reason"]
    diffs = bad["output_diffs"]
    assert diffs["loss"] == {"max_abs": 0.0, "max_rel": 0.0} and diffs["labels"]["max_abs"] == 0.0
    assert 0.9e-3 < diffs["logits"]["max_rel"] < 1.1e-3 and diffs["logits"]["max_abs"] > 1e-3

    # show and report carry the per-output differences and the reference
    shown = bisect_cli("show", str(first["run_id"]), "--json", "--cache-dir", str(cache), cwd=root, check_json=True)
    rows = {r["version"]: r for r in shown.json["probe_rows"] if r.get("output_diffs")}
    assert rows[FIRST_BAD]["output_diffs"]["logits"]["max_rel"] == diffs["logits"]["max_rel"]
    table = bisect_cli("show", str(first["run_id"]), "--cache-dir", str(cache), cwd=root,
                       env=cli_env(COLUMNS="400")).stdout
    assert "outputs" in table and "logits: abs" in table
    md = bisect_cli("report", str(first["run_id"]), "--cache-dir", str(cache), cwd=root).stdout
    assert "**reference:** 1.0 (outputs labels, logits, loss; rtol 1e-05, atol 1e-08)" in md
    assert "**diverged outputs:** logits" in md and "logits: abs" in md and "--diverge-from 1.0" in md

    # A looser tolerance re-judges the stored runs: nothing executes.
    runs_before, lines_before = _probe_rows(cache), side.read_text()
    loose = _run(root, cache, drift_index, recipe, "--diverge-from", "1.0", "--rtol", "1e-2")
    assert loose.returncode == 3, loose.stdout + loose.stderr  # not reproduced: every release matches
    assert loose.json["status"] == "not-reproduced" and loose.json["executed"] == 0
    assert all(p["reused"] for p in loose.json["probes"])
    assert _probe_rows(cache) == runs_before and side.read_text() == lines_before, "a recipe ran again"
    assert loose.json["reference"]["rtol"] == 1e-2 and loose.json["diverged_outputs"] == []

    # Outputs are stored once per content, counted, and pruned with their records.
    info = json.loads(bisect_cli("cache", "info", "--json", "--cache-dir", str(cache), cwd=root).stdout)
    assert info["outputs"] == 4, info  # loss, labels, and logits before and after 1.5
    orphan = cache / "outputs" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a run that is gone")
    bisect_cli("cache", "prune", "--max-size", "100GB", "--cache-dir", str(cache), cwd=root)
    assert not orphan.exists()
    assert json.loads(bisect_cli("cache", "info", "--json", "--cache-dir", str(cache), cwd=root).stdout)["outputs"] == 4

    # `show --rerun` judges a probe again as its run did: against 1.0's outputs, 1e-5.
    again = _rerun(root, cache, first["run_id"], FIRST_BAD)
    assert again.returncode == 1 and again.json["verdict"] == "bad", again.stdout + again.stderr
    assert again.json["output_diffs"]["logits"]["max_rel"] == diffs["logits"]["max_rel"]
    assert "logits" in again.json["reason"] and again.json["reference"]["version"] == "1.0"


def test_a_bad_exit_without_the_signature_is_untestable(shared, drift_index):
    root, cache = shared
    recipe = write_recipe(root / "signature.py", SIGNATURE_BODY.format(oom=OOM), package="drift", deps=("drift",))
    plain = _run(root, cache, drift_index, recipe)
    assert plain.json["first_bad"] == OOM[0], "without a signature the out-of-memory exit counts as the regression"
    sig = _run(root, cache, drift_index, recipe, "--signature", "shape mismatch")
    assert sig.json["first_bad"] == FIRST_BAD
    assert sig.json["not_signature"] and set(sig.json["not_signature"]) <= set(OOM)
    untestable = {u["version"]: u["reason"] for u in sig.json["untestable"]}
    assert untestable[OOM[-1]].startswith("failed, but not with the signature /shape mismatch/ (exit 1)")
    probe = next(p for p in sig.json["probes"] if p["version"] == FIRST_BAD)
    assert probe["signature_matched"] is True and probe["verdict"] == "bad"
    text = bisect_cli("run", str(recipe), "--index-url", drift_index.url, "--cache-dir", str(cache),
                      "--signature", "shape mismatch", cwd=root).stdout
    assert f"probe(s) failed, but not with the signature" in text
    # The recipe table's signature-exception says the same, by exception class.
    by_class = write_recipe(root / "signature_class.py", SIGNATURE_BODY.format(oom=OOM), package="drift",
                            deps=("drift",), extra_tool='signature-exception = "ValueError"')
    by_class_run = _run(root, cache, drift_index, by_class).json
    assert by_class_run["first_bad"] == FIRST_BAD
    check = bisect_cli("check", str(by_class), "--with", f"drift=={OOM[0]}", "--index-url", drift_index.url,
                       "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert check.returncode == 125 and check.json["reason"].startswith(NOT_SIGNATURE), check.stdout
    assert check.json["signature_matched"] is False
    # `show --rerun` keeps the signature of the run it repeats (the flag, or the table's).
    for run_id in (sig.json["run_id"], by_class_run["run_id"]):
        again = _rerun(root, cache, run_id, OOM[-1])
        assert again.returncode == 125 and again.json["reason"].startswith(NOT_SIGNATURE), again.stdout
        assert again.json["signature_matched"] is False


def test_reference_mistakes_are_one_line_errors(shared, drift_index):
    root, cache = shared

    def _fails(recipe, *args):
        return _run(root, cache, drift_index, recipe, *args, check_json=False)

    recipe = write_recipe(root / "no_outputs.py", "import drift\n", package="drift", deps=("drift",))
    assert_one_line_error(_fails(recipe, "--diverge-from", "1.0"),
                          "the reference release 1.0 wrote no outputs to $ENVBISECT_OUTPUTS")
    assert_one_line_error(_fails(recipe, "--rtol", "1e-3"), "--diverge-from VERSION")
    assert_one_line_error(_fails(recipe, "--diverge-from", "1.0", "--samples", "auto", "--metric", "loss"),
                          "drop --by date / --samples auto, or them")
    assert_one_line_error(_fails(recipe, "--diverge-from", "9.9"),
                          "--diverge-from 9.9 is not a release of drift")


def test_a_reference_recorded_elsewhere_is_one_line_naming_how_to_store_it_here(shared, drift_index):
    """A reference probe reused by key whose files this cache lacks (recorded on another
    machine) would make every comparison fail: one line, and its fix works."""
    root, cache = shared
    recipe = write_recipe(root / "elsewhere.py", OUTPUTS_BODY.format(side=str(root / "elsewhere-side.txt")),
                          package="drift", deps=("drift", "numpy"))
    stored = bisect_cli("check", str(recipe), "--with", "drift==1.0", "--index-url", drift_index.url, "--cache-dir",
                        str(cache), "--json", cwd=root, check_json=True)
    with sqlite3.connect(cache / "results.db") as db:
        [(manifest,)] = db.execute("SELECT outputs FROM probes WHERE run_id = ?", (stored.json["run_id"],)).fetchall()
    logits = cache / "outputs" / json.loads(manifest)["logits"]["hash"][:2] / json.loads(manifest)["logits"]["hash"]
    logits.unlink()
    args = ("--diverge-from", "1.0", "--range", "<=1.2")
    line = assert_one_line_error(_run(root, cache, drift_index, recipe, *args, check_json=False),
                                 "the reference release 1.0's output(s) logits were recorded elsewhere",
                                 code=2)
    fix = line.split("`")[1].split()
    assert fix[:2] == ["bisect", "check"] and "--no-reuse" in fix, line
    assert bisect_cli(*fix[1:], "--index-url", drift_index.url, "--cache-dir", str(cache), cwd=root).returncode == 0
    assert logits.is_file()
    again = _run(root, cache, drift_index, recipe, *args)
    assert again.returncode == 3 and again.json["status"] == "not-reproduced", again.stdout + again.stderr


def test_matrix_cells_are_judged_by_reference_and_signature(shared, drift_index):
    """``bisect matrix`` judges as ``bisect run`` does: each cell's outputs against the
    reference release's (``--diverge-from``), and bad cells by the signature."""
    root, cache = shared
    recipe = write_recipe(root / "matrix_outputs.py", OUTPUTS_BODY.format(side=str(root / "matrix-side.txt")),
                          package="drift", deps=("drift", "numpy"))
    proc = bisect_cli("matrix", str(recipe), "--axis", "drift>=1.3,<1.7", "--diverge-from", "1.0", "--index-url",
                      drift_index.url, "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert proc.returncode == 0, proc.stderr
    cells = {c["versions"]["drift"]: c for c in proc.json["cells"]}
    assert {v: c["verdict"] for v, c in cells.items()} == {"1.3": "good", "1.4": "good", "1.5": "bad", "1.6": "bad"}
    assert cells["1.5"]["diverged"] == ["logits"] and cells["1.3"]["diverged"] == []
    assert proc.json["reference"]["version"] == "1.0" and proc.json["reference"]["rtol"] == 1e-5
    loose = bisect_cli("matrix", str(recipe), "--axis", "drift>=1.3,<1.7", "--diverge-from", "1.0", "--rtol", "1e-2",
                       "--index-url", drift_index.url, "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    assert {c["verdict"] for c in loose.json["cells"]} == {"good"} and loose.json["executed"] == 0

    by_class = write_recipe(root / "matrix_signature.py", SIGNATURE_BODY.format(oom=OOM), package="drift",
                            deps=("drift",), extra_tool='signature-exception = "ValueError"')
    sig = bisect_cli("matrix", str(by_class), "--axis", "drift>=1.3,<1.6", "--index-url", drift_index.url,
                     "--cache-dir", str(cache), "--json", cwd=root, check_json=True)
    verdicts = {c["versions"]["drift"]: (c["verdict"], c["reason"]) for c in sig.json["cells"]}
    assert verdicts["1.5"][0] == "bad" and verdicts["1.3"][0] == verdicts["1.4"][0] == "untestable", verdicts
    assert verdicts["1.4"][1].startswith(NOT_SIGNATURE) and sig.json["not_signature"]


#: Writes its array as a raw ``.npy`` (header and float64 data by hand) from an
#: environment that has no numpy: the candidate's environment cannot compare it.
RAW_NPY_BODY = """
import os, pathlib, struct
import drift
header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
header += " " * (63 - (10 + len(header)) % 64) + "\\n"
data = struct.pack("<2d", 1.0 * drift.SCALE, 2.0)
blob = b"\\x93NUMPY\\x01\\x00" + len(header).to_bytes(2, "little") + header.encode("latin-1") + data
(pathlib.Path(os.environ["ENVBISECT_OUTPUTS"]) / "x.npy").write_bytes(blob)
"""


def test_a_comparison_the_candidate_cannot_make_is_untestable_not_a_divergence(shared, drift_index):
    """Outputs that differ but cannot be measured where the candidate runs (no numpy in
    its environment) are no evidence of divergence: those probes are untestable with the
    reason, and no boundary is named from them."""
    root, _ = shared
    recipe = write_recipe(root / "raw_npy.py", RAW_NPY_BODY, package="drift", deps=("drift",))
    proc = _run(root, root / "raw-cache", drift_index, recipe, "--diverge-from", "1.0", check_json=True)
    res = proc.json
    assert res["status"] != "found", res
    after = [p for p in res["probes"] if p["version"] >= FIRST_BAD]
    assert after and all(p["verdict"] == "untestable" for p in after), after
    assert all("No module named 'numpy'" in p["reason"] for p in after), after
