"""Reports a maintainer accepts as they are (issue 14, part 3), end to end.

One real bisection (real CLI subprocess, real uv installs from the loopback index, a
recipe that writes a numeric metric and a long string metric) is shared by the module;
each test reads what it recorded: the self-contained Markdown report, the printed ``uv
run`` line run for real, the standalone HTML page in a real headless Chromium, the
terminal output (history in 80 columns, one plain progress line per probe, ``-q``), and
the cache commands (read-only ones create nothing; prune reaches its size).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support.cli import bisect_cli, cli_env, write_recipe
from support.index_server import LocalIndex

LONG_DEVICE = "GPU:0 (a device name far longer than twenty-four characters)"

METRIC_BODY = f'''
import json, os, sys
import planted
diff = 0.0 if planted.VALUE == 1 else 40.0 + float(planted.__version__.split(".")[1])
print(f"max_abs_diff={{diff}} for planted {{planted.__version__}}")
print("fused kernel compared with eager", file=sys.stderr)
json.dump({{"max_abs_diff": diff, "device": {LONG_DEVICE!r}}}, open(os.environ.get("ENVBISECT_RESULT", os.devnull), "w"))
sys.exit(0 if planted.VALUE == 1 else 1)
'''


class Recorded:
    """The shared run: where it ran, its recipe, index, cache, and what the CLI printed."""

    def __init__(self, work: Path, index: LocalIndex, proc: subprocess.CompletedProcess) -> None:
        self.work, self.index, self.proc = work, index, proc
        self.cache = work / "cache"

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return bisect_cli(*args, "--cache-dir", str(self.cache), cwd=self.work, **kw)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, planted_versions):
    work = tmp_path_factory.mktemp("report-run")
    index = LocalIndex(work / "index").start()
    for release in planted_versions:
        index.add(release.path, upload_time=release.upload_time,
                  yanked="planted: broken build" if release.yanked else False)
    (work / "recipes").mkdir()
    recipe = write_recipe(work / "recipes" / "metric_recipe.py", METRIC_BODY)
    # The absolute path as typed: the report must print it relative to the directory.
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(work / "cache"),
                      "--prefetch", "0", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield Recorded(work, index, proc)
    index.stop()


def _result(rec: Recorded) -> dict:
    return rec.cli("report", "1", "--format", "json", check_json=True).json


def test_markdown_report_is_self_contained(recorded):
    md = recorded.cli("report", "1").stdout
    result = _result(recorded)
    n = len(result["probes"])
    # The recipe's source, collapsed.
    assert "<details><summary>Recipe recipes/metric_recipe.py" in md
    assert "fused kernel compared with eager" in md and "json.dump(" in md
    # Output tails of the probes either side of the boundary.
    assert "**last good 1.5, stdout**" in md and "max_abs_diff=0.0 for planted 1.5" in md
    assert "**first bad 1.6, stderr**" in md and "max_abs_diff=46.0 for planted 1.6" in md
    # Every metric in full: the long string is not cut (the probe table's brief drops it).
    assert md.count(LONG_DEVICE) >= n
    # The environment diff and the chart: one value per probe, in version order.
    assert "| planted | 1.5 | 1.6 |" in md
    chart = md[md.index("```mermaid"):]
    chart = chart[:chart.index("```", 3)]
    assert "xychart-beta" in chart and 'y-axis "max_abs_diff"' in chart
    labels = re.search(r'x-axis "planted" \[(.*)\]', chart).group(1)
    values = re.search(r"line \[(.*)\]", chart).group(1).split(", ")
    versions = sorted((p["version"] for p in result["probes"]), key=lambda v: tuple(map(int, v.split("."))))
    assert labels == ", ".join(f'"{v}"' for v in versions) and len(values) == n
    # No local absolute path; the upstream section says why there is no compare link.
    assert str(recorded.work) not in md and "#### Upstream changes" in md
    # Reproduce lines: the relative recipe path and the run's snapshot pin.
    assert f"uv run --index-url {recorded.index.url}" in md
    assert f"--exclude-newer {result['snapshot']}" in md and md.rstrip().endswith("recipes/metric_recipe.py\n```")


def test_printed_uv_run_line_gives_the_same_verdict(recorded, tmp_path):
    line = _result(recorded)["reproduce"][1]
    assert line.startswith("uv run ") and "planted==1.6" in line
    uv_dir = Path(sys.executable).parent  # the uv installed with the dev environment
    env = cli_env(PATH=f"{uv_dir}{os.pathsep}{os.environ['PATH']}", UV_CACHE_DIR=str(tmp_path / "uv"),
                  UV_PYTHON_DOWNLOADS="never", UV_PYTHON=sys.executable)
    bad = subprocess.run(line, shell=True, cwd=recorded.work, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr  # bad, as the probe of 1.6 was
    assert "max_abs_diff=46.0 for planted 1.6" in bad.stdout
    good = subprocess.run(line.replace("planted==1.6", "planted==1.5"), shell=True, cwd=recorded.work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    # --deps as-of-release: the line pins the candidate's upload time, the candidate exempt.
    asof = recorded.cli("run", "recipes/metric_recipe.py", "--index-url", recorded.index.url, "--deps",
                        "as-of-release", "--good", "1.5", "--bad", "1.6", "--no-verify", "--json", check_json=True)
    line = asof.json["reproduce"][1]
    assert "--exclude-newer 2024-" in line and "--exclude-newer-package planted=2100-01-01T00:00:00Z" in line, line
    again = subprocess.run(line, shell=True, cwd=recorded.work, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "max_abs_diff=46.0 for planted 1.6" in again.stdout, again.stderr


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _dump_dom(browser: str, page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after load, and the console messages Chromium logged (errors, warnings, logs)."""
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]


def test_html_page_loads_in_a_real_browser_with_one_point_per_probe(recorded, tmp_path):
    page = tmp_path / "report.html"
    proc = recorded.cli("report", "1", "--format", "html", "-o", str(page))
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert "<svg" in html and "| planted |" not in html and "<table>" in html
    assert not re.search(r"<script|<link|\bsrc=|@import|url\(", html), "a standalone page loads nothing"
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (.ci/run installs Debian's chromium where apt-get works)")
    dom, console = _dump_dom(browser, page, tmp_path)
    assert console == [], console
    n = len(_result(recorded)["probes"])
    assert len(re.findall(r'<circle class="point"', dom)) == n
    assert "planted" in dom and "1.6" in dom
    # The console check can fail: a page with a broken script logs an error.
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("</body>", "<script>undefinedFunction()</script></body>"))
    assert _dump_dom(browser, broken, tmp_path)[1]


def test_a_fifo_output_is_written_whole_to_its_reader(recorded, tmp_path):
    """``report -o FIFO`` writes the report to whoever reads the FIFO, in place (a FIFO is
    no file to rename over), whole. With nothing reading it waits, as ``cat > FIFO`` does:
    an output the user names is theirs to read (README, "Reports")."""
    file = tmp_path / "report.md"
    assert recorded.cli("report", "1", "-o", str(file)).returncode == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # A reader, and a writer of the test's own so that the reader waits for the report
    # instead of seeing the end of the stream before the report opens the FIFO.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(fifo, os.O_WRONLY)
    os.set_blocking(reader, True)
    received = bytearray()

    def take_all():
        while chunk := os.read(reader, 65536):
            received.extend(chunk)
    drain = threading.Thread(target=take_all)
    drain.start()
    try:
        written = recorded.cli("report", "1", "-o", str(fifo), timeout=60)
    finally:
        os.close(keep_open)
        drain.join(timeout=60)
        os.close(reader)
    assert written.returncode == 0, written.stderr
    assert bytes(received) == file.read_bytes() and b"planted" in received
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "report.md"], "no temporary file left beside it"


def test_progress_is_one_plain_line_per_probe_and_q_silences_it(recorded):
    lines = [ln for ln in recorded.proc.stderr.splitlines() if ln.strip()]
    probes = [ln for ln in lines if re.match(r"probe \d+ of ~\d+: \S+: (good|bad|skip|error) ", ln)]
    assert len(probes) == len(_result(recorded)["probes"]), recorded.proc.stderr
    assert "\x1b" not in recorded.proc.stderr and "\r" not in recorded.proc.stderr
    quiet = recorded.cli("run", "recipes/metric_recipe.py", "--index-url", recorded.index.url, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_history_fits_80_columns_without_wrapping(recorded):
    proc = recorded.cli("history", env=cli_env(COLUMNS="80"))
    lines = proc.stdout.rstrip("\n").splitlines()
    assert lines and max(len(ln) for ln in lines) <= 80, proc.stdout
    runs = recorded.cli("history", "--json", check_json=True).json
    assert len(lines) == 1 + len(runs), "one line per run: long cells are cut, not wrapped"
    assert lines[0].split() == ["run", "kind", "recipe", "package", "status", "answer", "probes", "started"]
    first = next(ln for ln in lines if ln.split()[0] == "1")
    assert first.split()[1] == "bisect" and first.split()[2].startswith("metric_rec") and "first bad" in first
    assert "…" in proc.stdout


def test_read_only_commands_create_no_cache_directory(tmp_path):
    missing = tmp_path / "nowhere"
    hist = bisect_cli("history", "--cache-dir", str(missing), cwd=tmp_path)
    assert hist.returncode == 0 and str(missing) in hist.stdout
    info = bisect_cli("cache", "info", "--cache-dir", str(missing), cwd=tmp_path)
    assert info.returncode == 0 and f"cache directory {missing} does not exist" in info.stdout
    show = bisect_cli("show", "1", "--cache-dir", str(missing), cwd=tmp_path)
    assert show.returncode == 2 and str(missing) in show.stderr
    assert not missing.exists() and not (tmp_path / "cache").exists()


def test_cache_prune_reaches_the_size_with_the_installer_cache(recorded):
    cache = recorded.cache
    # A scratch directory left by a process that is gone (pid 1's stamp, a start time it never had).
    leftover = cache / "scratch" / "probe-1-100000000000-deadbeef"
    (leftover / "out").mkdir(parents=True)
    (leftover / "out" / "big.bin").write_bytes(b"x" * 200_000)
    info = recorded.cli("cache", "info", "--json", check_json=True).json
    assert info["environments"] >= 2 and info["total_size"] != "0 B"
    # What a prune cannot remove: the results, the index cache, the logs (plus a margin).
    kept = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()
               and f.relative_to(cache).parts[0] not in ("envs", "uv", "scratch"))
    # ... and a limit that removing every environment does not reach: half the uv cache.
    uv = sum(f.stat().st_size for f in (cache / "uv").rglob("*") if f.is_file())
    assert uv > 8 * 1024, f"the uv cache holds only {uv} bytes: nothing to clean"
    proc = recorded.cli("cache", "prune", "--max-size", f"{(kept + uv // 2) // 1024}KiB")
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 leftover" in proc.stdout and not leftover.exists()
    assert re.search(r"removed [1-9]\d* environment\(s\), least recently used first", proc.stdout)
    assert "cleaned the installer (uv) cache" in proc.stdout and "still above" not in proc.stdout, proc.stdout
    after = recorded.cli("cache", "info", "--json", check_json=True).json
    assert after["environments"] == 0


#: What ``bisect --help`` must not import: the store, the index client, the recipe schema
#: and the probe machinery (speed is measured in bench/bench_cli.py, never asserted).
HEAVY = ("sqlite_utils", "requests", "pydantic", "psutil", "packaging.tags", "envbisect.store", "envbisect.index",
         "envbisect.schema", "envbisect.session", "envbisect.report")

_HELP = """
import sys
sys.argv = ["bisect", "--help"]
from envbisect.cli import main
try:
    main()
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""


def test_help_imports_no_heavy_module(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _HELP], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    assert "Usage" in proc.stdout and "report" in proc.stdout
    loaded = set(proc.stderr.split())
    assert "envbisect.cli" in loaded and not loaded & set(HEAVY), loaded & set(HEAVY)
