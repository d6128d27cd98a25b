"""Pure parts of numerical verdicts: the tolerance criterion, per-output differences,
reuse against a reference (the comparison's key), signatures, outputs manifests, the
flags and the recipe table."""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import threading
from pathlib import Path

import pytest

from envbisect import outputs
from envbisect.cli_options import numerics_for
from envbisect.compare import Reference, Tolerance, differences, judge_outputs, settled, to_compare
from envbisect.errors import ConfigError, RecipeError
from envbisect.outputs import MAX_OUTPUTS, NOTE_NAMES, collect, path_of, prune, usage
from envbisect.policy import RegressMode
from envbisect.recipes import parse_recipe_text
from envbisect.requests_model import Judging
from envbisect.signatures import NOT_SIGNATURE, Signature

REF = Reference("1.0", {"a": {"kind": "json", "shape": None, "hash": "h-a"},
                        "b": {"kind": "npy", "shape": [2, 2], "hash": "h-b"}})


def _row(outputs, comparison=None, exit_code=0, **tails):
    return {"exit_code": exit_code, "signal": None, "timed_out": False, "duration_s": 0.1, "outputs": outputs,
            "comparison": comparison, **tails}


def _same(**changes):
    out = {k: dict(v) for k, v in REF.outputs.items()}
    for name, entry in changes.items():
        if entry is None:
            out.pop(name)
        else:
            out[name] = dict(out.get(name, {}), **entry)
    return out


def test_the_criterion_is_within_atol_or_within_rtol_and_nan_never_matches():
    tol = Tolerance(rtol=1e-3, atol=1e-6)
    assert tol.matches(1e-7, math.inf)        # tiny absolute difference near a zero reference
    assert tol.matches(5.0, 1e-4)              # large values, small relative difference
    assert not tol.matches(1e-3, 1e-2)
    assert not tol.matches(math.nan, math.nan)


def test_identical_contents_need_no_comparison_and_measured_ones_are_rejudged_exactly():
    assert differences(_same(), None, REF) == {"a": {"max_abs": 0.0, "max_rel": 0.0},
                                                 "b": {"max_abs": 0.0, "max_rel": 0.0}}
    changed = _same(b={"hash": "h-b2"})
    assert to_compare(changed, REF) == ["b"]
    assert not settled(changed, None, REF), "an unmeasured output cannot be judged"
    measured = {"reference": REF.digest, "outputs": {"b": {"max_abs": 2e-3, "max_rel": 1e-3}}}
    assert settled(changed, measured, REF)
    assert judge_outputs(changed, measured, REF, Tolerance(1e-5, 1e-8)).diverged == ("b",)
    assert judge_outputs(changed, measured, REF, Tolerance(1e-2, 0)).matched is True
    other = Reference("1.1", _same(a={"hash": "h-a2"}))
    assert not settled(changed, measured, other), "a comparison with other reference contents does not count"


def test_a_comparison_that_failed_is_no_evidence_of_divergence():
    """The candidate's environment could not read an output (no numpy there, an unreadable
    file): untestable with the reason, settled (running it again would fail alike), and
    only a structural change or a measured difference is a divergence."""
    changed = _same(b={"hash": "h-b2"})
    failed = {"reference": REF.digest,
              "outputs": {"b": {"error": "cannot be compared here: ModuleNotFoundError: No module named 'numpy'"}}}
    found = judge_outputs(changed, failed, REF, Tolerance(0, 0))
    assert found.matched is None and "No module named 'numpy'" in found.reason and not found.diverged
    assert settled(changed, failed, REF)
    legacy = {"reference": REF.digest,  # stored by a version that called it a "problem"
              "outputs": {"b": {"problem": "cannot be compared: ModuleNotFoundError: No module named 'numpy'"}}}
    old = judge_outputs(changed, legacy, REF, Tolerance(0, 0))
    assert old.matched is None and not old.diverged and "No module named 'numpy'" in old.reason
    shape = {"reference": REF.digest, "outputs": {"b": {"problem": "shape (3,) where the reference has (2, 2)"}}}
    assert judge_outputs(changed, shape, REF, Tolerance(1e9, 1e9)).diverged == ("b",)


@pytest.mark.parametrize(("changes", "words"), [
    ({"a": None}, "a missing"),
    ({"c": {"kind": "json", "shape": None, "hash": "h-c"}}, "c extra"),
    ({"b": {"shape": [2, 3], "hash": "x"}}, "b shape (2, 3) where the reference has (2, 2)"),
    ({"b": {"kind": "json", "hash": "x"}}, "b kind json where the reference has npy"),
])
def test_structural_changes_diverge_whatever_the_tolerance(changes, words):
    found = judge_outputs(_same(**changes), None, REF, Tolerance(1e9, 1e9))
    assert found.matched is False and words in found.reason


def test_the_reference_is_in_the_reuse_rule_not_in_the_probe_key():
    changed = _row(_same(b={"hash": "h-b2"}), {"reference": REF.digest, "outputs": {"b": {"max_abs": 1, "max_rel": 1}}})
    assert Judging(reference=REF).reusable(changed)
    assert not Judging(reference=Reference("1.0", _same(a={"hash": "z"}))).reusable(changed)
    assert Judging().reusable(changed), "without a reference any stored run is judged by its exit"
    assert Judging(reference=REF).reusable(_row(None, exit_code=None)), "a crash is judged without outputs"
    assert not Judging(reference=REF).reusable(_row(None)), "a row recorded before outputs existed runs again"


def test_judging_rejudges_a_stored_row_under_new_tolerances_and_signatures():
    row = _row(_same(b={"hash": "h-b2"}), {"reference": REF.digest, "outputs": {"b": {"max_abs": 2e-3, "max_rel": 1e-3}}},
               exit_code=1, stderr_tail="ValueError: shape mismatch\n")
    tight = Judging(reference=REF).judge(row)
    assert tight.outcome.value == "bad" and tight.details["diverged"] == ["b"]
    assert Judging(reference=REF, tolerance=Tolerance(1e-2, 0)).judge(row).outcome.value == "good"
    assert Judging(reference=REF, signature=Signature("out of memory")).judge(row).reason.startswith(NOT_SIGNATURE)
    plain = Judging(signature=Signature("shape mismatch")).judge(row)
    assert plain.outcome.value == "bad" and plain.details == {"signature_matched": True}


def test_signature_exception_names_the_crash_that_is_the_regression():
    crash = {"exit_code": 113, "stderr_tail": "Traceback ...\nnumpy.linalg.LinAlgError: Singular matrix\n"}
    assert Judging().judge(crash).verdict.value == "untestable"
    assert Judging(signature=Signature(exception="LinAlgError")).judge(crash).verdict.value == "bad"
    assert Judging(signature=Signature(exception="ValueError")).judge(crash).verdict.value == "untestable"
    oom = {"exit_code": 1, "stderr_tail": "MemoryError\n"}
    assert Judging(regress=RegressMode.EXIT, signature=Signature(exception="ValueError")).judge(oom).reason.startswith(
        NOT_SIGNATURE)


def _npy(shape: tuple[int, ...]) -> bytes:
    """A float64 .npy file written by hand (the test process needs no numpy either)."""
    header = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    count = math.prod(shape)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + struct.pack(f"<{count}d", *range(count))


def test_outputs_are_stored_once_by_content_with_a_manifest(tmp_path: Path):
    root = tmp_path / "store"
    for run in ("one", "two"):
        out = tmp_path / run
        out.mkdir()
        (out / "logits.npy").write_bytes(_npy((256, 256)))
        (out / "loss.json").write_text("0.5")
        (out / "labels.json").write_text(json.dumps([[1, 2], [3, 4]]))
        (out / "note.txt").write_text(run)
        (out / "loop").symlink_to(out / "note.txt")
        manifest, note = collect(out, root)
    assert manifest["logits"]["kind"] == "npy" and manifest["logits"]["shape"] == [256, 256]
    assert manifest["loss"] == dict(manifest["loss"], kind="json", shape=None)
    assert manifest["labels"]["shape"] == [2, 2] and manifest["note.txt"]["kind"] == "bytes"
    assert "loop (not a plain file)" in note
    assert usage(root)[0] == 5, "identical contents are kept once (two note.txt contents)"
    assert path_of(root, manifest["logits"]["hash"]).read_bytes() == _npy((256, 256))
    assert prune(root, {e["hash"] for e in manifest.values()})[0] == 1 and usage(root)[0] == 4


def test_left_out_outputs_get_one_bounded_line_by_reason(tmp_path: Path):
    """A recipe that floods $ENVBISECT_OUTPUTS: 64 outputs are kept, and the note on the rest
    (stored with the probe, shown by show and report) stays one short line that still says
    why and how many, whatever the names hold."""
    out = tmp_path / "out"
    out.mkdir()
    for i in range(MAX_OUTPUTS + 1000):
        (out / f"m{i:05d}.json").write_text(str(i))
    (out / "a.json").write_text("1")
    (out / "a.npy").write_bytes(_npy((2,)))  # a second file of output "a"
    os.mkfifo(out / "a_fifo")  # never opened: reading it would wait for a writer for ever
    (out / "a_dir").mkdir()
    (out / "a_link").symlink_to(out / "a.json")
    (out / "a_new\nline").mkdir()  # a name that would break the line
    manifest, note = collect(out, tmp_path / "store")
    assert len(manifest) == MAX_OUTPUTS and "a" in manifest
    assert "\n" not in note and len(note) < 1000, note
    assert "a_dir, a_fifo, a_link, a_new\\nline (not a plain file)" in note, note
    assert "a.npy (a second file of one output name)" in note
    assert f"and {1000 + 1 - NOTE_NAMES} more (more than {MAX_OUTPUTS} outputs)" in note, note


def test_malformed_outputs_are_opaque_bytes_never_a_crash(tmp_path: Path, monkeypatch):
    """What a recipe writes is read without trusting it: JSON nested past Python's stack,
    .npy files cut short or claiming a 1 GiB header are stored as opaque bytes (compared by
    content), and a JSON output too big to parse here is left out with the fix named. Before,
    the first three raised out of the probe (RecursionError, IndexError) and ended the run."""
    monkeypatch.setattr(outputs, "JSON_MAX_BYTES", 300_000)  # deep.json is 200 kB, big.json 400 kB
    out = tmp_path / "out"
    out.mkdir()
    (out / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "cut.npy").write_bytes(b"\x93NUMPY")
    (out / "cut2.npy").write_bytes(b"\x93NUMPY\x01")
    (out / "claims.npy").write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30) + b"{}")
    (out / "big.json").write_text(json.dumps(list(range(60_000))))
    (out / "fine.json").write_text(json.dumps([[1.5, 2.5]]))
    manifest, note = collect(out, tmp_path / "store")
    assert {n: e["kind"] for n, e in manifest.items()} == {
        "claims": "bytes", "cut": "bytes", "cut2": "bytes", "deep": "bytes", "fine": "json"}
    assert manifest["fine"]["shape"] == [1, 2]
    assert note == "left out: big.json (JSON over 0 MiB: save a large array as .npy)"


def test_an_outputs_directory_swapped_or_unreadable_is_noted_not_followed(tmp_path: Path, monkeypatch):
    """The recipe owns $ENVBISECT_OUTPUTS: replaced by a link to elsewhere, nothing there is
    taken for its outputs (and the link, not its target, is removed); a file it made
    unreadable is left out by name. Root reads any file, so the permission error is raised
    by a stand-in for ``open_plain`` here (mocked: it cannot happen to this suite's user)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.json").write_text("1")
    link = tmp_path / "out"
    link.symlink_to(elsewhere)
    extra = outputs.gather(link, tmp_path / "store", {"exit_code": 0}, None, Path(sys.executable), {})
    assert extra == {"outputs": None, "outputs_note": "left out: $ENVBISECT_OUTPUTS was replaced by a symbolic link"}
    assert not link.exists() and not link.is_symlink() and (elsewhere / "secret.json").exists()
    assert not (tmp_path / "store").exists()

    out = tmp_path / "out2"
    out.mkdir()
    (out / "a.json").write_text("1")
    (out / "b.json").write_text("2")
    real = outputs.open_plain

    def denied(path: Path):
        if path.name == "a.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(outputs, "open_plain", denied)
    manifest, note = collect(out, tmp_path / "store")
    assert list(manifest) == ["b"] and note == "left out: a.json (unreadable: Permission denied)"


def test_a_fifo_or_link_swapped_in_after_the_listing_is_never_read(tmp_path: Path, monkeypatch):
    """The race the metrics reader closes, closed here too: a recipe's leftover child (on
    macOS an orphan can outlive the probe) swaps a FIFO or a link in for a file between the
    check and the read. Opened blocking, the FIFO would wait for a writer for ever; followed,
    the link would store another file as the output; a bigger file is measured as it is
    read. The swap is made by a hook on the check, exactly between the two steps; the
    collection runs in a thread with a deadline."""
    monkeypatch.setattr(outputs, "JSON_MAX_BYTES", 300_000)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.json", "b.json", "c.json", "d.json"):
        (out / name).write_text("1")
    (tmp_path / "elsewhere.json").write_text("[9, 9]")
    real = outputs._left_out_why

    def swap(path: Path, name: str, manifest):
        why = real(path, name, manifest)
        if path.name == "a.json":
            path.unlink()
            os.mkfifo(path)
        elif path.name == "b.json":
            path.unlink()
            path.symlink_to(tmp_path / "elsewhere.json")
        elif path.name == "d.json":
            path.write_text(json.dumps(list(range(60_000))))  # 400 kB
        return why
    monkeypatch.setattr(outputs, "_left_out_why", swap)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(collect(out, tmp_path / "store")), daemon=True)
    worker.start()
    worker.join(30)
    if not done:
        os.close(os.open(out / "a.json", os.O_WRONLY | os.O_NONBLOCK))  # let the blocked reader go
        pytest.fail("collect blocked on a FIFO swapped in for an output file")
    manifest, note = done[0]
    assert list(manifest) == ["c"], manifest
    assert note == "left out: a.json, b.json (not a plain file); d.json (JSON over 0 MiB: save a large array as .npy)"


def test_flags_and_recipe_table_give_the_reference_tolerances_and_signature(tmp_path: Path):
    text = ("# /// script\n# dependencies = []\n# [tool.envbisect]\n# reference = \"2.15.0\"\n# rtol = 1e-3\n"
            "# signature-exception = \"ValueError\"\n# ///\n")
    recipe = parse_recipe_text(text, tmp_path / "r.py")
    ref, tol, sig = numerics_for(None, None, 0.5, None, recipe)
    assert (ref, tol, sig) == ("2.15.0", Tolerance(1e-3, 0.5), Signature(None, "ValueError"))
    with pytest.raises(ConfigError, match="pass --diverge-from VERSION"):
        numerics_for(None, 1e-3, None, None, parse_recipe_text(text.replace('# reference = "2.15.0"\n', ""), recipe.path))
    with pytest.raises(ConfigError, match="is not a regular expression"):
        numerics_for("1.0", None, None, "(", recipe)
    with pytest.raises(RecipeError, match=r"r.py:5: \[tool.envbisect\] rtol: must be a number >= 0"):
        parse_recipe_text(text.replace("rtol = 1e-3", 'rtol = "tight"'), recipe.path)


def test_outputs_travel_checked_and_only_what_the_other_side_lacks(tmp_path: Path, monkeypatch):
    """--executor dask: files are checked by sha256 on arrival, stored by content; what the
    coordinator has (the reference's contents) is not sent back; the size is bounded."""
    import hashlib

    from envbisect import outputs_transfer as transfer
    from envbisect.errors import ExecutorError

    src, dst = tmp_path / "worker", tmp_path / "coordinator"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.json").write_text("[1, 2]")
    (tmp_path / "out" / "b.json").write_text("3.5")
    (tmp_path / "out" / "c.bin").write_bytes(b"x" * 100)
    manifest, _ = collect(tmp_path / "out", src)
    files, left = transfer.pack(src, manifest, present=[manifest["a"]["hash"]])
    assert set(files) == {manifest["b"]["hash"], manifest["c.bin"]["hash"]} and left == []
    transfer.receive(dst, files)
    assert path_of(dst, manifest["b"]["hash"]).read_text() == "3.5"
    with pytest.raises(ExecutorError, match="arrived damaged"):
        transfer.receive(dst, {hashlib.sha256(b"good").hexdigest(): b"evil"})
    assert usage(dst)[0] == 2, "nothing of a damaged file is kept"
    monkeypatch.setattr(transfer, "MAX_SHIPPED_BYTES", 50)
    files, left = transfer.pack(src, manifest)
    assert left == ["c.bin"] and set(files) == {manifest["a"]["hash"], manifest["b"]["hash"]}
    ref = {"version": "1.0", "outputs": manifest}
    with pytest.raises(ConfigError, match="more than --executor dask ships"):
        transfer.reference_files(src, ref)
    monkeypatch.setattr(transfer, "MAX_SHIPPED_BYTES", 1 << 20)
    assert transfer.reference_files(src, ref)[manifest["a"]["hash"]] == b"[1, 2]"
    with pytest.raises(ConfigError, match="output a is not in this cache.*bisect check RECIPE --with PKG==1.0 --no-reuse"):
        transfer.reference_files(dst, ref)
