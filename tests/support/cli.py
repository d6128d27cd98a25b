"""Run the real ``bisect`` CLI as a subprocess, and write small recipes for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "PIP_", "ENVBISECT_"))}
    env.update(extra)
    return env


def bisect_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
               check_json: bool = False) -> subprocess.CompletedProcess:
    """``python -m envbisect ARGS`` with the test interpreter; output captured as text."""
    proc = subprocess.run([sys.executable, "-m", "envbisect", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check_json:
        try:
            proc.json = json.loads(proc.stdout)  # type: ignore[attr-defined]
        except ValueError:
            raise AssertionError(f"exit {proc.returncode}, stdout not JSON:\n{proc.stdout}\nstderr:\n{proc.stderr}")

    return proc


def write_recipe(path: Path, body: str, *, package: str = "planted", deps: tuple[str, ...] = ("planted",),
                 timeout: float = 60, extra_tool: str = "") -> Path:
    """A PEP 723 recipe whose body is ``body`` (dedented)."""
    dep_list = ", ".join(json.dumps(d) for d in deps)
    header = (
        "# /// script\n"
        f"# dependencies = [{dep_list}]\n"
        "# [tool.envbisect]\n"
        f'# package = "{package}"\n'
        f"# timeout = {timeout}\n"
        + "".join(f"# {line}\n" for line in extra_tool.splitlines() if line.strip())
        + "# ///\n"
    )
    path.write_text(header + textwrap.dedent(body))
    return path


#: The planted recipe: good while planted.VALUE == 1 (releases before 1.6).
PLANTED_BODY = """
import sys
import planted
sys.exit(0 if planted.VALUE == 1 else 1)
"""


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """One ``error:`` line on stderr naming the problem, no traceback, and the exit code
    of its class (2 input, 6 environment, ...). Returns the line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]
