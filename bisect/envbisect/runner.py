"""Run a recipe in a built environment and report exactly what happened.

The runner owns the process side of a probe: a scrubbed environment (no leaked
interpreter settings, index credentials or secrets), a fresh scratch directory as the
working directory, output captured to files with a bounded tail kept in memory, a
timeout that stops the *whole process group*, and the metrics file the recipe may
write to ``$ENVBISECT_RESULT``. It never decides good or bad: that is
:mod:`envbisect.policy`'s job, so stored raw results can be re-judged later.

Why files and a process group: a recipe that forks a helper which keeps stdout open
would block a reader of a pipe forever, and a helper left running would outlive the
probe and skew the next one. Output therefore goes to files, the recipe starts in a new
session (its own process group) and whatever is left of that group is killed when the
recipe ends. A descendant that calls ``setsid()`` itself escapes the group; nothing
portable can follow it without ``/proc`` or cgroups.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from envbisect.errors import ConfigError, InstallFailed

#: Environment variable naming the file a recipe may write its metrics (a JSON object) to.
RESULT_ENV = "ENVBISECT_RESULT"
#: Exit status of a recipe that died of an uncaught exception other than AssertionError.
#: Python itself exits 1 for any uncaught exception, which would read as "bad"; a recipe
#: that crashed on an ImportError has measured nothing, so the launcher below turns such a
#: crash into this status, which the policy judges an error. An uncaught AssertionError
#: keeps exit 1: ``assert np.allclose(...)`` in a recipe means "bad".
EXIT_UNCAUGHT = 113
#: Runs the recipe as ``__main__`` exactly as ``python recipe.py`` would (same argv, same
#: sys.path[0]) but maps uncaught non-assertion exceptions to EXIT_UNCAUGHT. It is passed
#: with ``-c``: nothing of envbisect is imported into the environment under test.
LAUNCHER = (
    "import os, runpy, sys, traceback\n"
    "sys.argv = sys.argv[1:]\n"
    "sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except (SystemExit, AssertionError):\n"
    "    raise\n"
    "except BaseException:\n"
    "    traceback.print_exc()\n"
    f"    sys.exit({EXIT_UNCAUGHT})\n"
)
#: Metrics files larger than this are dropped (with a note), never read whole.
METRICS_MAX_BYTES = 64 * 1024

# Interpreter and environment-manager settings that would make the env's python see
# another environment's packages or startup code.
_INTERPRETER_VARS = frozenset(
    {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "__PYVENV_LAUNCHER__",  # macOS framework builds: makes a venv python report the base one
        "VIRTUAL_ENV",
        "VIRTUAL_ENV_PROMPT",
        "CONDA_PREFIX",
    }
)
# A recipe never installs anything, so every pip/uv setting is dropped: index URLs,
# keyring and netrc settings among them may carry credentials.
_INSTALLER_PREFIXES = ("PIP_", "UV_")
# Variable names that look like they hold a secret (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY,
# HF_TOKEN, SSH_AUTH_SOCK ...). Over-matching costs a recipe nothing it should rely on.
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL|AUTH|PRIVATE_KEY|SESSION_KEY|ACCESS_KEY",
    re.IGNORECASE,
)
# A URL carrying credentials: "scheme://user:pass@host", or any userinfo on http(s)
# ("https://<token>@host").
_CREDENTIAL_URL = re.compile(
    r"[a-z][a-z0-9+.-]*://[^/\s@:]*:[^/\s@]*@|https?://[^/\s@]+@", re.IGNORECASE
)


@dataclass(frozen=True)
class RawResult:
    """What one run of a recipe did, before any judgement.

    ``exit_code`` is None when the recipe was killed by a signal or stopped by the
    timeout. For a timed-out run ``duration_s`` is the time until the timeout fired (so
    it reads as the timeout), not including the grace period spent stopping it.
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    stdout_tail: str
    stderr_tail: str
    log_path: str | None
    metrics: dict | None
    metrics_note: str | None

    def to_dict(self) -> dict:
        """A JSON-ready dict (the form the store keeps)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RawResult:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored and optional
        fields missing from older rows take empty values."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values.setdefault("signal", None)
        values.setdefault("timed_out", False)
        values.setdefault("duration_s", 0.0)
        values.setdefault("stdout_tail", "")
        values.setdefault("stderr_tail", "")
        values.setdefault("log_path", None)
        values.setdefault("metrics", None)
        values.setdefault("metrics_note", None)
        values["timed_out"] = bool(values["timed_out"])
        if isinstance(values["metrics"], str):  # a store that kept the JSON text
            try:
                values["metrics"] = json.loads(values["metrics"])
            except ValueError:
                values["metrics"] = None
        return cls(**values)


def scrubbed_environ(
    base: Mapping[str, str] | None = None, *, env_bin: Path | None = None
) -> dict[str, str]:
    """Return the environment a recipe runs with: ``base`` (default ``os.environ``) minus
    interpreter overrides, installer settings, secret-looking names and values holding
    credential URLs; user site-packages off, output unbuffered, ``env_bin`` first on PATH.

    Recipes are untrusted with respect to credentials (they may print their environment
    into a log that gets attached to a public issue), so this errs on removing too much.
    """
    source = os.environ if base is None else base
    env: dict[str, str] = {}
    for name, value in source.items():
        if (
            name in _INTERPRETER_VARS
            or name.upper().startswith(_INSTALLER_PREFIXES)
            or _SECRET_NAME.search(name)
            or _CREDENTIAL_URL.search(value)
        ):
            continue
        env[name] = value
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if env_bin is not None:
        rest = env.get("PATH")
        env["PATH"] = str(env_bin) if not rest else f"{env_bin}{os.pathsep}{rest}"
    return env


def run_recipe(
    python: Path,
    recipe: Path,
    *,
    timeout: float,
    log_path: Path,
    scratch_dir: Path,
    env: Mapping[str, str] | None = None,
    tail_bytes: int = 8192,
    grace_s: float = 3.0,
    keep_scratch: bool = False,
) -> RawResult:
    """Run ``python recipe`` once and return what happened.

    The recipe runs in a new, empty directory under ``scratch_dir`` (removed afterwards
    unless ``keep_scratch``), with ``env`` (default: :func:`scrubbed_environ` for the
    env's ``bin``) plus ``ENVBISECT_RESULT``, stdin from /dev/null and stdout/stderr to
    files. At ``timeout`` seconds the process group gets SIGTERM, then SIGKILL after
    ``grace_s``. Whatever is left of the group after the recipe ends is killed too.

    ``log_path`` receives a short header, then the full stdout, then the full stderr
    (each under its own ``==> stdout <==`` / ``==> stderr <==`` marker): two separate
    captures are needed for separate tails, and sections read better than a guess at
    interleaving. Raises :class:`InstallFailed` when ``python`` cannot be started (a
    broken environment), :class:`ConfigError` for a non-positive timeout; never raises
    for anything the recipe does.
    """
    if not timeout > 0:
        raise ConfigError(
            f"timeout must be a positive number of seconds, got {timeout!r}; pass e.g. --timeout 600"
        )
    # Absolute paths: the recipe runs in the scratch directory. abspath, not resolve():
    # a venv's python is a symlink whose location is what makes it the venv's.
    python = Path(os.path.abspath(python))
    recipe = Path(os.path.abspath(recipe))
    scratch_dir.mkdir(parents=True, exist_ok=True)
    probe_dir = Path(tempfile.mkdtemp(prefix="probe-", dir=scratch_dir))
    try:
        return _run_in(python, recipe, probe_dir, timeout, log_path, env, tail_bytes, grace_s)
    finally:
        if not keep_scratch:
            shutil.rmtree(probe_dir, ignore_errors=True)


def _run_in(
    python: Path,
    recipe: Path,
    probe_dir: Path,
    timeout: float,
    log_path: Path,
    env: Mapping[str, str] | None,
    tail_bytes: int,
    grace_s: float,
) -> RawResult:
    """Run the recipe with its cwd at ``probe_dir/work`` and captures beside it (outside
    the cwd, so the recipe's own files cannot collide with them)."""
    work = probe_dir / "work"
    work.mkdir()
    result_file = work / "result.json"
    child_env = dict(scrubbed_environ(env_bin=python.parent) if env is None else env)
    child_env[RESULT_ENV] = str(result_file)
    out_file, err_file = probe_dir / "stdout", probe_dir / "stderr"
    with open(out_file, "wb") as out, open(err_file, "wb") as err:
        try:
            proc = subprocess.Popen(
                [str(python), "-c", LAUNCHER, str(recipe)],
                cwd=work,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            raise InstallFailed(
                f"cannot start the environment's python {python}: {exc.strerror or exc}; "
                "rebuild the environment (delete it from the cache and run again)"
            ) from exc
        returncode, timed_out, duration = _wait(proc, timeout, grace_s)
    exit_code, sig = (None, -returncode) if returncode < 0 else (returncode, None)
    if timed_out:
        exit_code = None
    metrics, note = read_metrics(result_file)
    ending = _ending(exit_code, sig, timed_out, duration)
    _write_log(log_path, python, recipe, work, out_file, err_file, ending)
    return RawResult(
        exit_code=exit_code,
        signal=sig,
        timed_out=timed_out,
        duration_s=duration,
        stdout_tail=_tail(out_file, tail_bytes),
        stderr_tail=_tail(err_file, tail_bytes),
        log_path=str(log_path),
        metrics=metrics,
        metrics_note=note,
    )


def _wait(proc: subprocess.Popen, timeout: float, grace_s: float) -> tuple[int, bool, float]:
    """Wait for the recipe; stop its group on timeout; always kill what is left of it.

    Returns (returncode, timed_out, duration). The grace period waits for the group
    leader only: without /proc there is no portable way to tell a live member from an
    unreaped zombie, so once the leader is gone the rest of the group is killed at once.
    """
    pgid = proc.pid  # start_new_session: the recipe leads its own group
    start = time.monotonic()
    timed_out = False
    try:
        try:
            proc.wait(timeout=timeout)
            duration = time.monotonic() - start
        except subprocess.TimeoutExpired:
            duration = time.monotonic() - start
            timed_out = True
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        # Ctrl-C or anything else while waiting: leave nothing running behind us.
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()
        raise
    # Forked helpers left behind (or ignoring SIGTERM) must not outlive the probe.
    _signal_group(pgid, signal.SIGKILL)
    return proc.wait(), timed_out, duration


def _signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to the process group; an empty group is not an error."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # nothing left in the group
    except PermissionError:
        pass  # macOS answers EPERM for a group holding only zombies


def read_metrics(path: Path) -> tuple[dict | None, str | None]:
    """Read the recipe's metrics file: (the JSON object, None) or (None, why it was
    dropped). A missing file is (None, None). Never reads more than the cap plus one
    byte and never raises: bad metrics must not cost the probe its exit status."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"metrics file cannot be read: {exc.strerror or exc}"
    with fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, "metrics path is not a regular file"
        data = fh.read(METRICS_MAX_BYTES + 1)
    if len(data) > METRICS_MAX_BYTES:
        return None, (
            f"metrics file is {_human_size(max(info.st_size, len(data)))}, "
            f"over the {_human_size(METRICS_MAX_BYTES)} cap"
        )
    try:
        value = json.loads(data)
    except RecursionError:
        return None, "metrics file is not valid JSON: nested too deeply"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return None, f"metrics file is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"metrics file holds {_json_kind(value)}, not a JSON object"
    return value, None


def _json_kind(value: object) -> str:
    """'a list', 'a number' ... for a parsed JSON value that is not an object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list"


def _human_size(n: int) -> str:
    """Binary units, one decimal: '64 KiB', '3.1 MiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            text = f"{n / scale:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{n} bytes"


def _tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a capture file, decoded as UTF-8 (errors replaced).

    A cut inside a multi-byte character would show as a replacement mark, so leading
    continuation bytes of a cut are dropped."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size - max(0, limit))
        fh.seek(start)
        data = fh.read()
    if start > 0:
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace")


def _ending(exit_code: int | None, sig: int | None, timed_out: bool, duration: float) -> str:
    """One line for the log header saying how the recipe ended."""
    if timed_out:
        return f"timed out after {duration:.1f} s (process group stopped)"
    if sig is not None:
        return f"killed by {signal_name(sig)} after {duration:.1f} s"
    return f"exit {exit_code} after {duration:.1f} s"


def signal_name(sig: int) -> str:
    """'SIGSEGV' for 11; 'signal 99' for a number the platform does not name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _write_log(
    log_path: Path, python: Path, recipe: Path, cwd: Path, out_file: Path, err_file: Path, ending: str
) -> None:
    """Write the full log: header, then stdout, then stderr (streamed, never in memory)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        header = f"# envbisect probe\n# command: {python} {recipe}\n# cwd: {cwd}\n# ended: {ending}\n"
        log.write(header.encode())
        for name, capture in (("stdout", out_file), ("stderr", err_file)):
            log.write(f"==> {name} <==\n".encode())
            with open(capture, "rb") as fh:
                _copy_ending_in_newline(fh, log)


def _copy_ending_in_newline(src: IO[bytes], dst: IO[bytes]) -> None:
    """Copy ``src`` to ``dst`` and make sure the copy ends with a newline, so the next
    section marker starts on its own line."""
    last = b"\n"
    while chunk := src.read(1 << 20):
        dst.write(chunk)
        last = chunk[-1:]
    if last != b"\n":
        dst.write(b"\n")
