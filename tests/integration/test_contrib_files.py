"""The files that run the daemon for real (systemd, launchd, GitHub Actions) are valid.

Each is parsed by the tool that will read it, or the nearest stand-in on this machine:
``plistlib`` for the launchd plist, ``systemd-analyze verify`` for the unit (skipped where
systemd is not installed), a YAML parser for the workflow (PyYAML in this interpreter or
any ``python3`` on PATH that has it; skipped otherwise). Beyond syntax, each is checked
to start ``bisect watch`` the way docs/watch.md says.

The Dask worker files (``envbisect-worker.service``, ``org.envbisect.worker.plist``) are
checked the same way, and then run: their command lines, expanded the way systemd and
launchd would, start real ``dask worker`` processes (the venv's) against a scheduler on
127.0.0.1, which must register with the resources the files promise and use the cache
directory their environment names.
"""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
UNIT = CONTRIB / "systemd" / "envbisect-watch.service"
PLIST = CONTRIB / "launchd" / "org.envbisect.watch.plist"
WORKFLOW = CONTRIB / "github" / "bisect-watch.yml"
UNIT_BINARY = "/srv/envbisect/.venv/bin/bisect"
WORKER_UNIT = CONTRIB / "systemd" / "envbisect-worker.service"
WORKER_PLIST = CONTRIB / "launchd" / "org.envbisect.worker.plist"
WORKER_UNIT_BINARY = "/srv/envbisect/.venv/bin/dask"
WORKER_PLIST_BINARY = "/Users/you/envbisect/.venv/bin/dask"
VENV_BIN = Path(sys.executable).parent


def test_launchd_plist_parses_and_runs_the_daemon():
    data = plistlib.loads(PLIST.read_bytes())
    assert data["Label"] == "org.envbisect.watch" == PLIST.stem
    command = " ".join(data["ProgramArguments"])
    assert "exec /Users/you/envbisect/.venv/bin/bisect watch --config" in command
    assert "--once" not in command
    assert data["KeepAlive"] == {"SuccessfulExit": False}, "a clean SIGTERM stop must not be restarted"
    assert data["ExitTimeOut"] >= 10
    assert "GITHUB_TOKEN" not in data.get("EnvironmentVariables", {}), "no token in the plist"


def _systemd_problems(unit: Path, tmp: Path, binary: str = UNIT_BINARY) -> list[str]:
    """What ``systemd-analyze verify`` says about ``unit`` once its binary path exists here."""
    copy = tmp / unit.name
    copy.write_text(unit.read_text().replace(binary, str(VENV_BIN / Path(binary).name)))
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
    assert not [line for line in text.splitlines() if line.startswith("PrivateTmp")], \
        "a private /tmp would hide the host-wide resource locks (envbisect-host-locks) from other bisect processes"


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


# --- The Dask worker: systemd unit and launchd agent -------------------------------------


def _venv_dask() -> str:
    """The ``dask`` command that ``pip install 'envbisect[dask]'`` put next to this Python."""
    pytest.importorskip("distributed")
    exe = shutil.which("dask", path=str(VENV_BIN))
    assert exe is not None, f"distributed is installed but there is no dask command in {VENV_BIN}"
    return exe


def test_the_dask_command_the_files_run_exists_and_has_their_flags():
    dask = _venv_dask()
    proc = subprocess.run([dask, "worker", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--resources", "--nthreads", "--name"):
        assert re.search(rf"^\s+{flag}\b", proc.stdout, re.MULTILINE), f"dask worker has no {flag}"


def _unit(path: Path) -> tuple[configparser.ConfigParser, dict[str, list[tuple[str, str]]]]:
    """The unit as configparser reads it (last value of a repeated key wins) and, for
    repeated keys (Environment=), every ``key=value`` of each section in order."""
    text = path.read_text()
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    entries: dict[str, list[tuple[str, str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            entries[section] = []
        else:
            key, _, value = line.partition("=")
            entries[section].append((key.strip(), value.strip()))
    return parser, entries


def _env_file(text: str) -> dict[str, str]:
    """A systemd EnvironmentFile: KEY=VALUE lines, comments on lines of their own, one
    pair of surrounding quotes removed."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _documented_env_file(unit_text: str) -> dict[str, str]:
    """The worker.env the unit's comments tell the reader to write."""
    lines = [m.group(1) for m in re.finditer(r"^#\s+([A-Z][A-Z0-9_]*=.*)$", unit_text, re.MULTILINE)]
    return _env_file("\n".join(lines))


def _systemd_argv(exec_start: str, env: dict[str, str], host: str) -> list[str]:
    """ExecStart= as systemd runs it: ``${VAR}`` becomes the value as (part of) one
    argument, a word that is exactly ``$VAR`` becomes the value split at whitespace,
    ``%H`` the host name (only the constructs this unit uses; no quotes in it)."""
    assert '"' not in exec_start and "'" not in exec_start and "\\" not in exec_start
    argv: list[str] = []
    for word in exec_start.split():
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            argv.extend(env.get(bare.group(1), "").split())
            continue
        word = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)
        argv.append(word.replace("%H", host).replace("%%", "%"))
    return argv


def _after(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, f"{flag} must appear once in {argv}"
    return argv[argv.index(flag) + 1]


def test_worker_unit_parses_and_runs_a_dask_worker():
    parser, entries = _unit(WORKER_UNIT)
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    service = parser["Service"]
    exec_start = service["ExecStart"]
    raw = shlex.split(exec_start)
    assert raw[0] == WORKER_UNIT_BINARY and raw[1] == "worker", raw
    assert Path(raw[0]).parent == Path(UNIT_BINARY).parent, "same venv as the watch unit"
    assert raw[2] == "${ENVBISECT_SCHEDULER}"
    assert _after(raw, "--nthreads") == "1"
    # Braces: the whole value is one argument even when it lists several resources.
    assert _after(raw, "--resources") == "${ENVBISECT_WORKER_RESOURCES}"
    assert _after(raw, "--name") == "%H"
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "control-group", "a running recipe must die with the worker"
    assert service["EnvironmentFile"] == "-/etc/envbisect/worker.env"
    assert service["User"] not in ("", "root") and service["WorkingDirectory"].startswith("/")
    assert service.get("PrivateTmp", "no") == "no", "the per-resource host locks live in /tmp"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    defaults = dict(v.split("=", 1) for k, v in entries["Service"] if k == "Environment")
    assert defaults["ENVBISECT_WORKER_RESOURCES"] == "gpu=1"
    assert defaults["ENVBISECT_CACHE_DIR"].startswith("/")
    documented = _documented_env_file(WORKER_UNIT.read_text())
    assert documented["ENVBISECT_SCHEDULER"] == "tcp://HOST:8786"
    assert documented["ENVBISECT_WORKER_RESOURCES"] == "gpu=1"
    assert documented["ENVBISECT_CACHE_DIR"].startswith("/")
    assert documented["UV_INDEX_URL"].startswith("https://") and "@" in documented["UV_INDEX_URL"]
    argv = _systemd_argv(exec_start, {**defaults, **documented}, "box")
    assert argv == [WORKER_UNIT_BINARY, "worker", "tcp://HOST:8786", "--nthreads", "1",
                    "--resources", "gpu=1", "--name", "box"]
    assert "UV_INDEX_URL=" not in "\n".join(v for _, v in entries["Service"]), "credentials only in worker.env"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_worker_unit_verifies(tmp_path):
    assert _systemd_problems(WORKER_UNIT, tmp_path, WORKER_UNIT_BINARY) == []
    broken = tmp_path / "broken" / WORKER_UNIT.name
    broken.parent.mkdir()
    broken.write_text(WORKER_UNIT.read_text().replace("KillMode=control-group", "KillMode=control-groups"))
    assert _systemd_problems(broken, tmp_path / "broken", WORKER_UNIT_BINARY), "the check must notice a bad value"


def test_worker_plist_parses_and_runs_a_metal_worker():
    text = WORKER_PLIST.read_text()
    data = plistlib.loads(text.encode())
    assert data["Label"] == "org.envbisect.worker" == WORKER_PLIST.stem
    args = data["ProgramArguments"]
    assert args[0] == WORKER_PLIST_BINARY and args[0].endswith("/dask") and args[1] == "worker", args
    watch = plistlib.loads(PLIST.read_bytes())
    assert f"exec {Path(args[0]).parent}/bisect " in watch["ProgramArguments"][-1], "same venv as the watch agent"
    assert args[2] == "tcp://SCHEDULER-HOST:8786"
    assert "worker" in args
    assert _after(args, "--resources") == "metal=1"
    assert _after(args, "--nthreads") == "1"
    assert data["KeepAlive"] is True and data["RunAtLoad"] is True
    assert data["EnvironmentVariables"]["ENVBISECT_CACHE_DIR"].startswith("/")
    assert data["WorkingDirectory"].startswith("/")
    assert data["StandardOutPath"].startswith("/") and data["StandardErrorPath"].startswith("/")
    assert data.get("ProcessType") != "Background", "a throttled worker skews timings"
    assert data.get("LimitLoadToSessionType", "Aqua") == "Aqua", "Metal needs the GUI session"
    comment = text[text.index("<!--"):text.index("-->")]
    assert "LaunchAgent" in comment
    assert "cp contrib/launchd/org.envbisect.worker.plist ~/Library/LaunchAgents/" in comment
    assert "launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/org.envbisect.worker.plist" in comment
    assert "SCHEDULER-HOST" in comment


def _start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group this test started (as systemd's control-group stop)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _base_environ() -> dict[str, str]:
    """This machine's environment without index, Dask or envbisect settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "ENVBISECT_", "DASK_"))}


def test_worker_files_start_workers_that_offer_their_resources(tmp_path):
    dask = _venv_dask()
    from distributed import Client

    procs: list[subprocess.Popen] = []
    try:
        scheduler_file = tmp_path / "scheduler.json"
        procs.append(_start([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(scheduler_file)], _base_environ(), tmp_path,
                            tmp_path / "scheduler.log"))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]

        # The systemd worker: the unit's defaults, then worker.env as documented, with this
        # scheduler, a cache here, and two resources in one quoted value.
        parser, entries = _unit(WORKER_UNIT)
        env = dict(v.split("=", 1) for k, v in entries["Service"] if k == "Environment")
        env.update(_documented_env_file(WORKER_UNIT.read_text()))
        del env["UV_INDEX_URL"]  # example credentials for an index that does not exist
        unit_cache = tmp_path / "unit-cache"
        env.update(_env_file(f'ENVBISECT_SCHEDULER={address}\nENVBISECT_WORKER_RESOURCES="gpu=1 mem=64e9"\n'
                             f"ENVBISECT_CACHE_DIR={unit_cache}\n"))
        host = socket.gethostname()
        argv = _systemd_argv(parser["Service"]["ExecStart"], env, host)
        assert argv[0] == WORKER_UNIT_BINARY
        (tmp_path / "unit-wd").mkdir()
        procs.append(_start([dask, *argv[1:]], {**_base_environ(), **env}, tmp_path / "unit-wd",
                            tmp_path / "unit-worker.log"))

        # The launchd worker: its arguments, this scheduler, a cache here.
        data = plistlib.loads(WORKER_PLIST.read_bytes())
        args = [address if a == "tcp://SCHEDULER-HOST:8786" else a for a in data["ProgramArguments"]]
        assert args[0] == WORKER_PLIST_BINARY
        plist_cache = tmp_path / "plist-cache"
        plist_env = {**data["EnvironmentVariables"], "ENVBISECT_CACHE_DIR": str(plist_cache)}
        (tmp_path / "plist-wd").mkdir()
        procs.append(_start([dask, *args[1:]], {**_base_environ(), **plist_env}, tmp_path / "plist-wd",
                            tmp_path / "plist-worker.log"))

        with Client(address, timeout=60, set_as_default=False) as client:
            deadline = time.monotonic() + 90
            while len(client.scheduler_info()["workers"]) < 2:
                exited = [" ".join(map(str, p.args[1:3])) for p in procs if p.poll() is not None]
                if exited or time.monotonic() > deadline:
                    logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*-worker.log")}
                    pytest.fail(f"the workers did not register ({exited or 'timeout'}): {logs}")
                time.sleep(0.2)
            workers = client.scheduler_info()["workers"]
            by_name = {w["name"]: (addr, w) for addr, w in workers.items()}
            assert host in by_name, f"the unit's worker is not named after the host: {list(by_name)}"
            unit_addr, unit_worker = by_name.pop(host)
            [(plist_addr, plist_worker)] = by_name.values()
            assert unit_worker["resources"] == {"gpu": 1.0, "mem": 64e9}
            assert plist_worker["resources"] == {"metal": 1.0}
            assert unit_worker["nthreads"] == plist_worker["nthreads"] == 1

            def cache_dir() -> str:
                from envbisect.config import default_cache_dir
                return str(default_cache_dir().absolute())

            caches = client.run(cache_dir, workers=[unit_addr, plist_addr])
            assert caches == {unit_addr: str(unit_cache), plist_addr: str(plist_cache)}
    finally:
        for proc in reversed(procs):
            _stop(proc)
