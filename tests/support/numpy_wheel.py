"""A real numpy wheel for this interpreter, for recipes on the loopback index.

Taken once per machine into the suite cache (:func:`support.frameworks.suite_cache`) with
``pip download`` from the registry pip is configured with; None when that is impossible
(offline, no wheel for this platform), and the tests that need it skip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.frameworks import suite_cache


def numpy_wheel() -> Path | None:
    """The path of a numpy wheel that installs on this interpreter, or None."""
    folder = suite_cache() / "wheels"
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted(folder.glob(f"numpy-*-{tag}-*.whl"))
    if found:
        return found[-1]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "numpy", "--only-binary=:all:", "--no-deps",
                        "--dest", str(folder), "--quiet"], check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError):
        return None
    found = sorted(folder.glob(f"numpy-*-{tag}-*.whl"))
    return found[-1] if found else None
