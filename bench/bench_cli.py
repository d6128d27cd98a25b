"""Figures for the terminal and the reports: ``bisect --help`` start time, and the size
of a typical run's Markdown and HTML reports.

* ``--help``: wall time of ``python -m envbisect --help`` (a fresh interpreter each time),
  median and best of R interleaved runs, next to a bare ``python -c pass`` and ``python -c
  "import typer"`` on the same machine (the floor the CLI cannot go under), optionally
  against another version's source (``--baseline DIR``), and the envbisect modules it
  imported (none of the store, index or schema layers).
* reports: one ``bisect run`` of a recipe that writes a numeric metric, against N
  releases on the test kit's loopback index, then ``bisect report RUN`` as Markdown and
  as HTML: bytes of each, and whether the Markdown fits a GitHub comment (65,536 chars).

Prints a table; always exits 0 (a report, not a test).

    .venv/bin/python bench/bench_cli.py [--repeat R] [--releases N] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _index import PACKAGE, build_fixture, clean_environ
from support.cli import write_recipe  # tests/ is on the path through _index

VENV_BIN = Path(sys.executable).parent
GITHUB_COMMENT_MAX = 65536

METRIC_RECIPE = f'''
import json, os, sys
import {PACKAGE}
diff = 0.0 if {PACKAGE}.VALUE == 1 else 41.7
print(f"max_abs_diff={{diff}}")
json.dump({{"max_abs_diff": diff, "device": "cpu"}}, open(os.environ.get("ENVBISECT_RESULT", os.devnull), "w"))
sys.exit(0 if {PACKAGE}.VALUE == 1 else 1)
'''


def _timed(cmd: list[str], repeat: int, **extra: str) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=clean_environ(**extra))
        times.append(time.perf_counter() - start)
    return times


def help_figures(repeat: int, baseline: Path | None) -> list[tuple[str, str]]:
    py = sys.executable
    cases = [("python -c pass", [py, "-c", "pass"], {}), ("python -c 'import typer'", [py, "-c", "import typer"], {}),
             ("bisect --help", [py, "-m", "envbisect", "--help"], {})]
    if baseline is not None:  # another version's source root (e.g. `git archive main bisect`), first on the path
        cases.append((f"bisect --help ({baseline})", [py, "-m", "envbisect", "--help"], {"PYTHONPATH": str(baseline)}))
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(repeat):  # interleaved, so a load change on a shared machine hits every case alike
        for name, cmd, extra in cases:
            times[name] += _timed(cmd, 1, **extra)
    rows = [(name, f"median {statistics.median(t) * 1000:.0f} ms, best {min(t) * 1000:.0f} ms")
            for name, t in times.items()]
    probe = ("import sys; sys.argv=['bisect','--help']\nfrom envbisect.cli import main\ntry:\n    main()\n"
             "except SystemExit:\n    pass\nprint(','.join(sorted(m for m in sys.modules if m.startswith('envbisect'))),"
             " file=sys.stderr)")
    mods = subprocess.run([py, "-c", probe], capture_output=True, text=True, env=clean_environ()).stderr.strip()
    rows.append(("envbisect modules imported by --help", mods.splitlines()[-1] if mods else "?"))
    return rows


def report_figures(releases: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        root = Path(tmp)
        fixture = build_fixture(root, releases, seed=14)
        try:
            recipe = write_recipe(root / "metric_recipe.py", METRIC_RECIPE, package=PACKAGE, deps=(PACKAGE,))
            cache = root / "cache"
            run = subprocess.run([str(VENV_BIN / "bisect"), "run", recipe.name, "--index-url", fixture.index.url,
                                  "--cache-dir", str(cache), "-q"], cwd=root, capture_output=True, text=True,
                                 env=clean_environ())
            rows = [("run", f"exit {run.returncode}, {releases} releases")]
            for fmt in ("md", "html"):
                out = root / f"report.{fmt}"
                subprocess.run([str(VENV_BIN / "bisect"), "report", "1", "--format", fmt, "-o", str(out),
                                "--cache-dir", str(cache)], cwd=root, capture_output=True, check=True, env=clean_environ())
                text = out.read_text()
                note = (f", fits a GitHub comment ({len(text)} of {GITHUB_COMMENT_MAX} chars)" if fmt == "md" else "")
                rows.append((f"report --format {fmt}", f"{len(text.encode())} bytes{note}"))
            return rows
        finally:
            fixture.index.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--releases", type=int, default=32)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="source root of another version to time --help against (e.g. main's bisect/)")
    args = parser.parse_args()
    rows = help_figures(args.repeat, args.baseline) + report_figures(args.releases)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
