"""Layout guard, end to end: a fresh interpreter started in the repository root.

``python -c`` puts the current directory first on ``sys.path``, so this is exactly the
situation in which a stray ``bisect/__init__.py`` would shadow the standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = "import bisect, envbisect; print(bisect.__file__); print(envbisect.__file__); print(bisect.bisect_left([1, 2, 3], 2))"


@pytest.mark.parametrize("extra_path", ["", "bisect"], ids=["cwd-only", "source-root-on-path"])
def test_fresh_interpreter_in_repo_root_gets_stdlib_bisect(extra_path: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra_path:
        # The source root on sys.path (as an editable install does) must not shadow it either.
        env["PYTHONPATH"] = str(REPO / extra_path)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    bisect_file, envbisect_file, left = done.stdout.split("\n")[:3]
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(bisect_file).resolve().is_relative_to(stdlib)
    assert Path(envbisect_file).resolve().parent == REPO / "bisect" / "envbisect"
    assert left == "1"
