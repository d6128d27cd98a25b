"""Run a recipe in a built environment and report exactly what happened.

The runner owns the process side of a probe: a scrubbed environment (no leaked
interpreter settings, index credentials or secrets), a fresh scratch directory as the
working directory, output captured to files with a bounded tail kept in memory, a
timeout that stops the *whole process tree*, and the metrics file the recipe may
write to ``$ENVBISECT_RESULT``. It never decides good or bad: that is
:mod:`envbisect.policy`'s job, so stored raw results can be re-judged later.

Why files and a process group: a recipe that forks a helper which keeps stdout open
would block a reader of a pipe forever, and a helper left running would outlive the
probe and skew the next one. Output therefore goes to files, the recipe starts in a new
session (its own process group) and whatever is left of that group is killed when the
recipe ends.

A descendant that calls ``setsid()`` (or ``setpgid()``) itself leaves that group, and
once its parent exits it is reparented and no longer findable from the recipe. So while
the recipe runs the runner polls it (every :data:`envbisect.probetree.POLL_S` seconds) and remembers, with
psutil, every descendant it has seen, by pid *and* creation time (a recycled pid is
never signalled). Stopping the recipe signals the group and every remembered
descendant, whichever session it is in, and whatever of them is still alive after the
recipe exits is killed. On Linux that leaves no gap: envbisect is a child subreaper
(:func:`envbisect.procs.become_subreaper`, set when the first probe starts), so a
grandchild that double-forks and calls ``setsid()`` between two polls, after its parent
has already exited, is reparented to envbisect rather than to PID 1. After each probe
envbisect kills and reaps every such adopted orphan that belongs to the probe: created
since the recipe started, not a process envbisect started itself (uv in another thread,
another probe's recipe), and carrying this probe's ``ENVBISECT_RESULT`` in its
environment (or, having dropped that variable, living outside envbisect's session). On
macOS (no subreaper) an escaping process is caught only when a poll saw it in the
recipe's tree while its ancestors there were still alive: the double-fork-and-setsid
between two polls still escapes there (a cgroup or a watchdog would be needed).

The recipe also dies with envbisect: it is started through :func:`envbisect.procs.popen`,
which on Linux sets ``PR_SET_PDEATHSIG`` (SIGKILL) in the child, so a ``kill -9`` of
envbisect does not leave the recipe running under PID 1. Its own helpers do not inherit
that signal; the probe's scratch directory is named after envbisect's pid and start
time, so the next run removes it (:func:`envbisect.procs.sweep_dirs`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from envbisect import procs
from envbisect.errors import ConfigError, InstallFailed
from envbisect.knobs import install_startup
from envbisect.metrics import read_metrics
from envbisect.printable import printable
from envbisect.probetree import wait_and_stop
from envbisect.redact import CREDENTIAL_URL, SECRET_NAME, redact

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
#: A probe's scratch directory is ``<scratch>/probe-<pid>-<start>-<random>``.
SCRATCH_PREFIX = "probe-"

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
# Secret-looking names (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, HF_TOKEN, SSH_AUTH_SOCK ...)
# and values holding credential URLs: the one rule, shared with the CLI's own re-exec.
_SECRET_NAME, _CREDENTIAL_URL = SECRET_NAME, CREDENTIAL_URL


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
    #: What the recipe changed in its env (:mod:`envbisect.envguard`): set by the executor
    #: after the run, which then says nothing about the candidate.
    env_changed: str | None = None

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
    on_start: Callable[[], None] | None = None,
) -> RawResult:
    """Run ``python recipe`` once and return what happened.

    The recipe runs in a new, empty directory under ``scratch_dir`` (removed afterwards
    unless ``keep_scratch``), with ``env`` (default: :func:`scrubbed_environ` for the
    env's ``bin``) plus ``ENVBISECT_RESULT``, stdin from /dev/null and stdout/stderr to
    files. At ``timeout`` seconds the process group and every descendant seen so far get
    SIGTERM, then SIGKILL after ``grace_s``. Whatever is left of the group and of those
    descendants after the recipe ends is killed too.

    ``on_start`` is called once the recipe's process has started (or could not).

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
    # Named after this process (pid and start time): a run after a kill -9 of this one
    # sweeps it away (procs.sweep_dirs), while one of a live process is never touched.
    probe_dir = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{procs.owner_stamp()}-", dir=scratch_dir))
    try:
        return _run_in(python, recipe, probe_dir, timeout, log_path, env, tail_bytes, grace_s, on_start)
    finally:
        if not keep_scratch:
            shutil.rmtree(probe_dir, ignore_errors=True)
        elif probe_dir.is_dir():
            (probe_dir / procs.KEEP_MARKER).touch()


def _run_in(
    python: Path,
    recipe: Path,
    probe_dir: Path,
    timeout: float,
    log_path: Path,
    env: Mapping[str, str] | None,
    tail_bytes: int,
    grace_s: float,
    on_start: Callable[[], None] | None = None,
) -> RawResult:
    """Run the recipe with its cwd at ``probe_dir/work`` and captures beside it (outside
    the cwd, so the recipe's own files cannot collide with them)."""
    work = probe_dir / "work"
    work.mkdir()
    result_file = work / "result.json"
    child_env = dict(scrubbed_environ(env_bin=python.parent) if env is None else env)
    child_env[RESULT_ENV] = str(result_file)
    install_startup(probe_dir, child_env)  # bisect narrow's start-up knobs, this probe only
    out_file, err_file = probe_dir / "stdout", probe_dir / "stderr"
    procs.become_subreaper()  # orphans of the recipe's tree come back to us (Linux)
    started = time.time()
    with open(out_file, "wb") as out, open(err_file, "wb") as err:
        try:
            proc = procs.popen(
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
        finally:
            if on_start is not None:
                on_start()
        returncode, timed_out, duration = wait_and_stop(proc, timeout, grace_s, (RESULT_ENV, str(result_file)), started)
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
        stdout_tail=redact(printable(_tail(out_file, tail_bytes))),  # tails are stored and shown
        stderr_tail=redact(printable(_tail(err_file, tail_bytes))),
        log_path=str(log_path),
        metrics=metrics,
        metrics_note=note,
    )


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
        return f"timed out after {duration:.1f} s (process tree stopped)"
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
