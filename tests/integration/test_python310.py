"""envbisect declares ``requires-python >=3.10``: prove it on a real 3.10.

The project is installed, with its declared dependencies only, into a fresh 3.10
environment (so a module that needs a package not declared for 3.10, such as ``tomli``
in place of ``tomllib``, fails here), then ``python -m envbisect --help`` and a
``bisect check`` against the planted index run under that interpreter.

A 3.10 is looked for with ``uv python find``, then ``python3.10`` on PATH, then pyenv's
versions, and as a last resort ``uv python install 3.10`` (a download from GitHub, bounded
by a short timeout). Without one the test is skipped, with the reason, in well under 15 s.
Installing the dependencies needs the public index (hence ``network``); an index that
cannot be reached skips too, but a resolution that fails is a failure: it means a
dependency does not support 3.10.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support.cli import cli_env, write_recipe

REPO = Path(__file__).resolve().parents[2]
#: Per step of the search; with the bounded install the skip path stays under 15 s.
FIND_TIMEOUT_S = 4
INSTALL_PYTHON_TIMEOUT_S = 8
NETWORK_TROUBLE = re.compile(r"dns error|failed to fetch|error sending request|tcp connect|connection refused|"
                             r"network is unreachable|timed out|could not connect|failed to download",
                             re.IGNORECASE)

RECIPE_BODY = """
import json, os, sys
import planted
with open(os.environ["ENVBISECT_RESULT"], "w") as out:
    json.dump({"python": "%d.%d" % sys.version_info[:2]}, out)
sys.exit(0 if planted.VALUE == 1 else 1)
"""


def _uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _is_310(path: str | None) -> bool:
    if not path:
        return False
    try:
        proc = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                              capture_output=True, text=True, timeout=FIND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "True"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _uv_find(env: dict[str, str]) -> tuple[str | None, str]:
    try:
        proc = subprocess.run([_uv(), "python", "find", "--no-python-downloads", "3.10"], capture_output=True,
                              text=True, timeout=FIND_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "`uv python find 3.10` timed out"
    path = proc.stdout.strip()
    if proc.returncode == 0 and _is_310(path):
        return path, ""
    return None, f"`uv python find 3.10`: {_last_line(proc.stderr)}"


def find_python310() -> tuple[str | None, str]:
    """A working Python 3.10 interpreter, or None and why there is none."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    found, why = _uv_find(env)
    if found:
        return found, ""
    reasons = [why]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in [shutil.which("python3.10"), *map(str, sorted(pyenv.glob("versions/3.10*/bin/python3.10")))]:
        if _is_310(candidate):  # a pyenv shim without a 3.10 selected fails this check
            return candidate, ""
    reasons.append("no working python3.10 on PATH or in pyenv")
    try:
        proc = subprocess.run([_uv(), "python", "install", "3.10"], capture_output=True, text=True,
                              timeout=INSTALL_PYTHON_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
        if proc.returncode == 0:
            found, why = _uv_find(env)
            if found:
                return found, ""
        reasons.append(f"`uv python install 3.10` failed: {_last_line(proc.stderr)}")
    except subprocess.TimeoutExpired:
        reasons.append(f"`uv python install 3.10` did not finish in {INSTALL_PYTHON_TIMEOUT_S} s "
                       "(downloads come from GitHub)")
    return None, "; ".join(reasons)


@pytest.fixture(scope="module")
def python310() -> str:
    found, why = find_python310()
    if found is None:
        pytest.skip(f"no Python 3.10 interpreter can be had here: {why}")
    return found


@pytest.mark.network
def test_envbisect_installs_and_runs_on_python_310(python310, tmp_path, request):
    venv = tmp_path / "venv310"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run([_uv(), "venv", "--quiet", "--python", python310, str(venv)], check=True, env=env,
                   timeout=60, stdin=subprocess.DEVNULL)
    python = str(venv / "bin" / "python")
    install = subprocess.run([_uv(), "pip", "install", "--python", python, str(REPO)], capture_output=True,
                             text=True, env=env, timeout=420, stdin=subprocess.DEVNULL)
    if install.returncode != 0 and NETWORK_TROUBLE.search(install.stderr):
        pytest.skip(f"the package index cannot be reached to install the dependencies: {_last_line(install.stderr)}")
    assert install.returncode == 0, install.stderr

    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "3.10"
    imports = subprocess.run([python, "-c", "import envbisect.plan, envbisect.recipes, envbisect.schema, "
                              "envbisect.watchconfig, envbisect.cli"], capture_output=True, text=True, cwd=tmp_path)
    assert imports.returncode == 0, imports.stderr
    helped = subprocess.run([python, "-m", "envbisect", "--help"], capture_output=True, text=True, cwd=tmp_path,
                            env=cli_env(), timeout=60)
    assert helped.returncode == 0 and "Usage" in helped.stdout, helped.stderr

    planted_index = request.getfixturevalue("planted_index")  # built only when a 3.10 is here
    recipe = write_recipe(tmp_path / "r.py", RECIPE_BODY)
    check = subprocess.run([python, "-m", "envbisect", "check", str(recipe), "--with", "planted==1.2",
                            "--index-url", planted_index.url, "--cache-dir", str(tmp_path / "cache"), "--json"],
                           capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=300,
                           stdin=subprocess.DEVNULL)
    assert check.returncode == 0, check.stderr
    result = json.loads(check.stdout)
    assert result["outcome"] == "good" and result["resolved"]["planted"] == "1.2", result
    assert result["metrics"]["python"] == "3.10", "the probe ran under the 3.10 that runs envbisect"
