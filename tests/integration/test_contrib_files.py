"""The files that run the daemon for real (systemd, launchd, GitHub Actions) are valid.

Each is parsed by the tool that will read it, or the nearest stand-in on this machine:
``plistlib`` for the launchd plist, ``systemd-analyze verify`` for the unit (skipped where
systemd is not installed), a YAML parser for the workflow (PyYAML in this interpreter or
any ``python3`` on PATH that has it; skipped otherwise). Beyond syntax, each is checked
to start ``bisect watch`` the way docs/watch.md says.
"""

from __future__ import annotations

import json
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
UNIT = CONTRIB / "systemd" / "envbisect-watch.service"
PLIST = CONTRIB / "launchd" / "org.envbisect.watch.plist"
WORKFLOW = CONTRIB / "github" / "bisect-watch.yml"
UNIT_BINARY = "/srv/envbisect/.venv/bin/bisect"


def test_launchd_plist_parses_and_runs_the_daemon():
    data = plistlib.loads(PLIST.read_bytes())
    assert data["Label"] == "org.envbisect.watch" == PLIST.stem
    command = " ".join(data["ProgramArguments"])
    assert "exec /Users/you/envbisect/.venv/bin/bisect watch --config" in command
    assert "--once" not in command
    assert data["KeepAlive"] == {"SuccessfulExit": False}, "a clean SIGTERM stop must not be restarted"
    assert data["ExitTimeOut"] >= 10
    assert "GITHUB_TOKEN" not in data.get("EnvironmentVariables", {}), "no token in the plist"


def _systemd_problems(unit: Path, tmp: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about ``unit`` once its binary path exists here."""
    copy = tmp / unit.name
    copy.write_text(unit.read_text().replace(UNIT_BINARY, str(Path(sys.executable).parent / "bisect")))
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys and unparsable values: its warnings name the file.
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if copy.name in line]
    return problems + ([f"exit {proc.returncode}"] if proc.returncode else [])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    assert UNIT_BINARY in UNIT.read_text()
    assert _systemd_problems(UNIT, tmp_path) == []
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    broken.write_text(UNIT.read_text().replace("KillMode=mixed", "KillMode=mixed\nRestartt=always"))
    assert _systemd_problems(broken, tmp_path / "broken"), "the check must notice a typo"


def test_systemd_unit_stops_the_daemon_gently():
    text = UNIT.read_text()
    assert f"ExecStart={UNIT_BINARY} watch --config" in text
    for line in ("KillMode=mixed", "KillSignal=SIGTERM", "RestartPreventExitStatus=2 75"):
        assert line in text.splitlines()
    assert "GITHUB_TOKEN=" not in text.replace("# then write GITHUB_TOKEN=", "")


def _load_yaml(path: Path):
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        return yaml.safe_load(path.read_text())
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), default=str))"
    for candidate in ("python3", "python"):
        exe = shutil.which(candidate)
        if exe is None:
            continue
        proc = subprocess.run([exe, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    pytest.skip("no YAML parser (PyYAML) available")


def test_github_workflow_parses_and_runs_watch_once():
    data = _load_yaml(WORKFLOW)
    # YAML 1.1 reads a bare `on` key as true (and JSON then spells it "true").
    triggers = next(data[k] for k in ("on", True, "true") if k in data)
    assert triggers["schedule"][0]["cron"].count(" ") == 4
    assert data["permissions"]["issues"] == "write"
    steps = data["jobs"]["watch"]["steps"]
    [watch] = [s for s in steps if "bisect watch" in s.get("run", "")]
    assert watch["run"].strip() == "bisect watch --once --config bisect.toml"
    assert watch["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    saved = [s for s in steps if s.get("uses", "").startswith("actions/cache/save")]
    assert saved and saved[0]["if"] == "always()", "state must be kept even when a run fails"
