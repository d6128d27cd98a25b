"""A full disk ends a run in a clear state: one line, the run interrupted, resumable.

The cache directory lives on a real, deliberately small tmpfs (mounted by the test, so it
needs root, as this project's machines and CI run; elsewhere the test is skipped). Before,
a full disk ended in an ``OSError: [Errno 28]`` or "database or disk is full" traceback,
and an installer that ran out of space made its candidate "untestable".
"""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from support.cli import PLANTED_BODY, bisect_cli, write_recipe


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=450k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_interrupts_the_run_with_one_line_and_the_rerun_resumes(tmp_path, planted_index, small_disk):
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    # -q: without a terminal each probe prints a progress line; the error must be the only other line.
    args = ("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(small_disk / "cache"), "-q")
    full = bisect_cli(*args, cwd=tmp_path)
    lines = [ln for ln in full.stderr.splitlines() if ln.strip()]
    assert full.returncode == 6, full.stdout + full.stderr
    assert len(lines) == 1 and lines[0].startswith("error: no space left for the cache directory"), full.stderr
    assert "free" in lines[0] and "run the same command again to resume" in lines[0]
    assert "Traceback" not in full.stderr
    with sqlite3.connect(small_disk / "cache" / "results.db") as con:
        status = con.execute("select status from runs where id = 1").fetchone()[0]
        untestable = con.execute("select count(*) from probes where verdict = 'untestable'").fetchone()[0]
    assert status in ("interrupted", "running") and untestable == 0, "a full disk is never a verdict"
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    again = bisect_cli(*args, "--json", cwd=tmp_path, check_json=True)
    assert again.returncode == 0, again.stderr
    assert again.json["run_id"] == 1 and (again.json["last_good"], again.json["first_bad"]) == ("1.5", "1.6")


def test_a_report_is_written_whole_or_not_at_all(tmp_path, planted_index, small_disk):
    """`report --output` to a full disk is one line with exit 6 and leaves the file that
    was there as it was (before: the file was truncated and written in place: whole when
    its old blocks sufficed, else exit 70, "failed unexpectedly", and an empty file); a
    path that cannot be written is one line with exit 2 (before: exit 70)."""
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    cache = tmp_path / "cache"
    assert bisect_cli("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache), "-q",
                      cwd=tmp_path).returncode == 0
    kept = small_disk / "report.md"
    kept.write_text("the report of yesterday\n")
    with open(small_disk / "filler", "wb", buffering=0) as fh:  # fill the disk to the last byte
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    for output, code, needle in ((kept, 6, f"no space left to write {kept}"),
                                 (tmp_path, 2, f"cannot write {tmp_path} (Is a directory)"),
                                 (tmp_path / "no" / "r.md", 2, "(No such file or directory)")):
        proc = bisect_cli("report", "1", "--format", "html", "--output", str(output), "--cache-dir", str(cache),
                          cwd=tmp_path)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == code and len(lines) == 1 and needle in lines[0], proc.stderr
        assert lines[0].endswith("pass another --output"), lines[0]
    assert kept.read_text() == "the report of yesterday\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "report.md"]  # no temporary file left
    (small_disk / "filler").unlink()
    done = bisect_cli("report", "1", "--output", str(kept), "--cache-dir", str(cache), cwd=tmp_path)
    assert done.returncode == 0 and kept.read_text().startswith("### envbisect: first bad release"), done.stderr
