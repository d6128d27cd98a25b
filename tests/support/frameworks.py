"""Real TensorFlow / torch environments for the recipe tests, built by ``bisect check``.

They live in a cache directory the suite reuses across runs (``ENVBISECT_TEST_CACHE``,
else the per-user cache directory from platformdirs), so TensorFlow is downloaded once per
machine, not once per test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import platformdirs

from support.cli import bisect_cli

REPO = Path(__file__).resolve().parents[2]
TF_VERSION = "2.21.0"  # one recent TensorFlow release with cp311 Linux wheels


def suite_cache() -> Path:
    path = Path(os.environ.get("ENVBISECT_TEST_CACHE") or platformdirs.user_cache_dir("envbisect")) / "test-suite"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_torch_wheel_dir() -> Path | None:
    """A find-links folder (from pip's configuration) holding a CPU torch wheel for this Python."""
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if "find-links" in line and "=" in line:
            dirs += line.split("=", 1)[1].strip().strip("'\"").split()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for d in dirs:
        path = Path(d.removeprefix("file://"))
        if path.is_dir() and any(path.glob(f"torch-*+cpu-{tag}-*linux*.whl")):
            return path
    return None


def torch_pins() -> list[str] | None:
    """``bisect check`` arguments that install the local CPU torch wheel, or None."""
    wheels = local_torch_wheel_dir()
    if wheels is None:
        return None
    version = sorted(wheels.glob("torch-*+cpu-*.whl"))[-1].name.split("-")[1]
    return ["--with", f"torch=={version}", "--find-links", str(wheels)]


TF_PINS = ["--with", f"tensorflow=={TF_VERSION}"]


def check(recipe: str, pins: list[str], *extra: str, env: dict | None = None):
    """``bisect check recipes/RECIPE`` in the suite cache, JSON decoded."""
    return bisect_cli("check", str(REPO / "recipes" / recipe), *pins, "--cache-dir", str(suite_cache()),
                      "--json", *extra, cwd=REPO, timeout=1500, env=env, check_json=True)


def env_python(recipe: str, pins: list[str]) -> str | None:
    """The interpreter of the environment ``bisect check`` builds for ``recipe`` + ``pins``
    (None when it cannot be built here, e.g. offline)."""
    res = check(recipe, pins).json
    python = suite_cache() / "envs" / str(res.get("env_key")) / "bin" / "python"
    return str(python) if python.exists() else None
