"""runner: real recipes in real subprocesses, with the current interpreter as the env's
python. Covers exit statuses, timeouts and process-tree kills (including a descendant
that left the group with setsid()), crashes, metrics files, bounded output capture and
the scrubbed environment."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from support.procs import is_running

from envbisect.errors import ConfigError, InstallFailed
from envbisect.policy import Outcome, combine, judge
from envbisect.metrics import METRICS_MAX_BYTES
from envbisect.runner import RESULT_ENV, RawResult, run_recipe, scrubbed_environ

FAULTS = Path(__file__).resolve().parents[1] / "recipes_faults"
PYTHON = Path(sys.executable)


def run(tmp_path: Path, name: str, **kwargs) -> RawResult:
    kwargs.setdefault("timeout", 20)
    return run_recipe(
        PYTHON,
        FAULTS / name,
        log_path=tmp_path / "logs" / f"{name}.log",
        scratch_dir=tmp_path / "scratch",
        **kwargs,
    )


def is_dead(pid: int) -> bool:
    """Gone, or a zombie (dead, waiting for a parent that may never reap it: in some
    containers PID 1 does not reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat_file = Path(f"/proc/{pid}/stat")
    try:
        # The state is the field after the parenthesised command name.
        return stat_file.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError as exc:  # pragma: no cover - /proc unavailable
        return exc.errno == errno.ESRCH


def wait_dead(pid: int, within: float = 10.0) -> bool:
    """Poll until ``pid`` is dead; SIGKILL is delivered asynchronously."""
    deadline = time.monotonic() + within
    while not is_dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(autouse=True)
def _reap_nothing_left(tmp_path):
    yield
    scratch = tmp_path / "scratch"
    if scratch.exists():
        assert list(scratch.iterdir()) == [], "the probe's scratch directory was not removed"


@pytest.mark.parametrize(
    "name, exit_code, outcome", [("good.py", 0, Outcome.GOOD), ("bad.py", 1, Outcome.BAD),
                                 ("skip.py", 125, Outcome.SKIP), ("error_exit.py", 3, Outcome.ERROR)]
)
def test_exit_statuses(tmp_path, name, exit_code, outcome):
    result = run(tmp_path, name)
    assert (result.exit_code, result.signal, result.timed_out) == (exit_code, None, False)
    assert result.metrics is None and result.metrics_note is None
    assert judge(result).outcome is outcome
    assert result.duration_s > 0
    log = Path(result.log_path).read_text()
    assert f"exit {exit_code}" in log and "==> stdout <==" in log and "==> stderr <==" in log
    assert RawResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_output_goes_to_tails_and_log(tmp_path):
    good, bad = run(tmp_path, "good.py"), run(tmp_path, "bad.py")
    assert good.stdout_tail == "no divergence\n" and good.stderr_tail == ""
    assert bad.stderr_tail == "divergence reproduced\n" and bad.stdout_tail == ""
    log = Path(bad.log_path).read_text()
    assert log.index("==> stdout <==") < log.index("==> stderr <==") < log.index("divergence reproduced")


def test_hang_is_stopped_by_the_timeout(tmp_path):
    result = run(tmp_path, "hang.py", timeout=1, grace_s=2)
    assert result.timed_out and result.exit_code is None
    assert result.signal == signal.SIGTERM
    assert result.stdout_tail == "hanging\n"
    assert judge(result).reason == "timed out after 1.0 s"
    assert "timed out" in Path(result.log_path).read_text()


def test_sigterm_ignored_gets_sigkill_after_the_grace_period(tmp_path):
    result = run(tmp_path, "term_ignored.py", timeout=1, grace_s=0.5)
    assert result.timed_out and result.signal == signal.SIGKILL


def test_forked_child_left_hanging_is_killed_after_the_parent_exits(tmp_path):
    result = run(tmp_path, "fork_hang.py")
    # The child held stdout open: a pipe reader would still be waiting here.
    assert (result.exit_code, result.timed_out) == (0, False)
    assert result.stdout_tail == "parent done\n"
    child = result.metrics["child_pid"]
    assert wait_dead(child), f"forked child {child} outlived the probe"


def test_forked_child_and_hanging_parent_are_both_stopped_by_the_timeout(tmp_path):
    result = run(tmp_path, "fork_then_hang.py", timeout=1.5, grace_s=1)
    assert result.timed_out
    assert wait_dead(result.metrics["child_pid"]) and wait_dead(result.metrics["parent_pid"])


# The child leaves the recipe's session and group (setsid), so a signal to the group
# misses it; it writes its pid only once setsid() has succeeded, then sleeps far past
# any test. The recipe itself waits for that, then lingers for ``linger`` seconds.
SETSID_RECIPE = """\
import os, sys, time
PID_FILE = {pid_file!r}
if os.fork() == 0:
    os.setsid()
    with open(PID_FILE + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(PID_FILE + ".tmp", PID_FILE)
    time.sleep(300)
    os._exit(0)
while not os.path.exists(PID_FILE):
    time.sleep(0.01)
time.sleep({linger})  # the runner polls its tree every 0.2 s: long enough to be seen
sys.exit(0)
"""


@pytest.fixture
def setsid_recipe(tmp_path):
    """Write the setsid recipe for a given linger time; yields (make, read_child_pid).
    Kills the child at teardown if it survived, so a failing test leaves nothing behind."""
    pid_file = tmp_path / "setsid_child.pid"

    def make(linger: float) -> Path:
        recipe = tmp_path / "setsid_escape.py"
        recipe.write_text(SETSID_RECIPE.format(pid_file=str(pid_file), linger=linger))
        return recipe

    def child_pid() -> int:
        return int(pid_file.read_text())

    yield make, child_pid
    if pid_file.exists() and is_running(child_pid(), settle_s=0):
        os.kill(child_pid(), signal.SIGKILL)


def test_setsid_child_is_stopped_by_the_timeout(tmp_path, setsid_recipe):
    make, child_pid = setsid_recipe
    result = run_recipe(PYTHON, make(linger=60), timeout=1.5, grace_s=1,
                        log_path=tmp_path / "logs" / "setsid.log", scratch_dir=tmp_path / "scratch")
    assert result.timed_out and result.signal == signal.SIGTERM
    pid = child_pid()
    assert not is_running(pid), f"setsid child {pid} outlived the timed-out probe"


def test_setsid_child_is_killed_after_the_recipe_exits(tmp_path, setsid_recipe):
    make, child_pid = setsid_recipe
    result = run_recipe(PYTHON, make(linger=1.0), timeout=20,
                        log_path=tmp_path / "logs" / "setsid.log", scratch_dir=tmp_path / "scratch")
    assert (result.exit_code, result.timed_out) == (0, False), result.stderr_tail
    pid = child_pid()
    assert not is_running(pid), f"setsid child {pid} outlived the probe"


def test_segfault_is_reported_as_a_signal(tmp_path):
    result = run(tmp_path, "segfault.py")
    assert (result.exit_code, result.signal, result.timed_out) == (None, signal.SIGSEGV, False)
    assert judge(result).reason == "killed by SIGSEGV"


def test_metrics_object_is_read(tmp_path):
    result = run(tmp_path, "metrics_good.py")
    assert result.exit_code == 1
    assert result.metrics == {"max_abs_diff": 41.7, "device": "GPU:0", "nested": {"rel": 0.5}}
    assert result.metrics_note is None


@pytest.mark.parametrize(
    "name, note",
    [
        ("metrics_bad_json.py", "metrics file is not valid JSON: "),
        ("metrics_not_object.py", "metrics file holds a list, not a JSON object"),
        ("metrics_huge.py", "metrics file is 3 MiB, over the 64 KiB cap"),
        # A FIFO once hung envbisect forever in the metrics read (fatal for the daemon).
        ("metrics_fifo.py", "metrics path is not a regular file"),
        ("metrics_symlink.py", "metrics path is not a regular file"),
    ],
)
def test_bad_metrics_are_dropped_with_a_note_and_keep_the_exit_status(tmp_path, name, note):
    result = run(tmp_path, name)
    assert result.exit_code == 0 and result.metrics is None
    assert result.metrics_note.startswith(note)
    assert judge(result).outcome is Outcome.GOOD


def test_control_characters_in_output_and_metrics_are_kept_printable(tmp_path):
    """Tails and metrics are shown on terminals and in issue comments: escape sequences
    are dropped, carriage returns become line breaks, other controls and bidi overrides
    are escaped; the log keeps the output as written."""
    result = run(tmp_path, "terminal_escapes.py")
    assert result.stdout_tail == "progress 1\nprogress 2\ndone\nbell\\x07 c1\\x9b2J rlo\\u202eevil tab\tkept\n"
    assert result.stderr_tail == "FAILED ValueError: boom\n"
    assert result.metrics == {"loss": 1.5, "note": "xy\\u202e"}
    assert "\x1b]0;pwned\x07" in Path(result.log_path).read_text()


def test_huge_stdout_is_captured_bounded_and_logged_whole(tmp_path):
    result = run(tmp_path, "huge_stdout.py", tail_bytes=4096)
    assert result.exit_code == 0
    assert len(result.stdout_tail.encode()) <= 4096
    assert result.stdout_tail.endswith("END-OF-OUTPUT \u2713\n")
    assert result.stderr_tail == "stderr marker\n"
    log = Path(result.log_path)
    assert log.stat().st_size > 10 * 1024 * 1024
    with open(log, "rb") as fh:
        fh.seek(-200, os.SEEK_END)
        assert fh.read().endswith("END-OF-OUTPUT \u2713\n==> stderr <==\nstderr marker\n".encode())


def test_tail_cut_inside_a_multibyte_character_drops_the_fragment(tmp_path):
    # The output ends "\u2713\n" (4 bytes); a 3-byte tail cuts into the check mark.
    result = run(tmp_path, "huge_stdout.py", tail_bytes=3)
    assert result.stdout_tail == "\n"


def test_recipe_sees_a_scrubbed_environment_and_a_fresh_scratch_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("VIRTUAL_ENV", "/some/venv")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("ANY_SECRET", "hush")
    monkeypatch.setenv("UV_INDEX_URL", "https://user:pw@mirror.example/simple")
    monkeypatch.setenv("MY_MIRROR", "https://user:pw@mirror.example/simple")
    monkeypatch.setenv("KEEP_ME", "yes")
    result = run(tmp_path, "env_dump.py")
    assert result.exit_code == 0, result.stderr_tail
    environ = result.metrics["environ"]
    for gone in ("PYTHONPATH", "VIRTUAL_ENV", "GITHUB_TOKEN", "ANY_SECRET", "UV_INDEX_URL", "MY_MIRROR"):
        assert gone not in environ
    assert environ["KEEP_ME"] == "yes"
    assert environ["PYTHONNOUSERSITE"] == "1" and environ["PYTHONUNBUFFERED"] == "1"
    assert environ["PATH"].split(os.pathsep)[0] == str(PYTHON.parent)
    cwd = Path(result.metrics["cwd"])
    assert environ[RESULT_ENV] == str(cwd / "result.json")
    assert cwd.is_relative_to(tmp_path / "scratch")
    assert result.metrics["listing"] == []  # empty, and result.json not created beforehand
    assert not cwd.exists()  # removed afterwards


def test_explicit_env_is_used_as_given_plus_the_result_variable(tmp_path):
    result = run(tmp_path, "env_dump.py", env={"PATH": os.environ["PATH"], "GIVEN": "1"})
    environ = result.metrics["environ"]
    assert environ["GIVEN"] == "1" and RESULT_ENV in environ and "PYTHONNOUSERSITE" not in environ


def test_each_run_gets_its_own_scratch_and_keep_scratch_keeps_it(tmp_path):
    first = run(tmp_path, "env_dump.py", keep_scratch=True)
    second = run(tmp_path, "env_dump.py", keep_scratch=True)
    first_cwd, second_cwd = Path(first.metrics["cwd"]), Path(second.metrics["cwd"])
    assert first_cwd != second_cwd
    assert (first_cwd / "result.json").exists() and (second_cwd / "result.json").exists()
    for cwd in (first_cwd, second_cwd):
        shutil.rmtree(cwd.parent)  # let the autouse check pass


def test_flaky_recipe_runs_combine_to_flaky(tmp_path):
    env = scrubbed_environ(env_bin=PYTHON.parent)
    env["FLAKY_STATE"] = str(tmp_path / "count")
    judgements = [judge(run(tmp_path, "flaky.py", env=env)) for _ in range(3)]
    assert [j.outcome for j in judgements] == [Outcome.GOOD, Outcome.BAD, Outcome.GOOD]
    judgement, flaky = combine(judgements)
    assert flaky and judgement.reason == "flaky: 2 good, 1 bad"


def test_missing_python_is_a_broken_environment(tmp_path):
    with pytest.raises(InstallFailed, match="rebuild the environment"):
        run_recipe(tmp_path / "env" / "bin" / "python", FAULTS / "good.py", timeout=5,
                   log_path=tmp_path / "log", scratch_dir=tmp_path / "scratch")


def test_on_start_is_told_once_the_recipe_runs_and_when_it_cannot_start(tmp_path):
    """Builds ahead of need wait for it (executor.Launches): it must come while the recipe
    is running, exactly once, and also when the env's python cannot start."""
    seen = []
    run(tmp_path, "hang.py", timeout=1.5, on_start=lambda: seen.append(time.monotonic()))
    assert len(seen) == 1
    broken = []
    with pytest.raises(InstallFailed):
        run_recipe(tmp_path / "env" / "bin" / "python", FAULTS / "good.py", timeout=5, log_path=tmp_path / "log",
                   scratch_dir=tmp_path / "scratch", on_start=lambda: broken.append(1))
    assert broken == [1]


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_timeout_must_be_positive(tmp_path, timeout):
    with pytest.raises(ConfigError, match="--timeout"):
        run(tmp_path, "good.py", timeout=timeout)


def test_metrics_cap_constant_matches_the_note():
    assert METRICS_MAX_BYTES == 64 * 1024


def test_scrubbed_environ_rules_on_a_given_base():
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "PYTHONHOME": "/x",
        "PYTHONSTARTUP": "/x/startup.py",
        "PYTHONUSERBASE": "/x",
        "CONDA_PREFIX": "/opt/conda",
        "PIP_EXTRA_INDEX_URL": "https://mirror.example/simple",
        "AWS_SECRET_ACCESS_KEY": "k",
        "HF_TOKEN": "t",
        "hf_token": "t",
        "DB_PASSWORD": "p",
        "OPENAI_API_KEY": "k",
        "SOME_APIKEY": "k",
        "GOOGLE_APPLICATION_CREDENTIALS": "/c.json",
        "SSH_PRIVATE_KEY": "k",
        "PROXY": "http://proxy.example:3128",  # no credentials: kept
        "CLONE": "https://ghp_x@github.example/o/r",  # token as userinfo: dropped
        "CUDA_VISIBLE_DEVICES": "0",
    }
    env = scrubbed_environ(base, env_bin=Path("/env/bin"))
    assert env == {
        "PATH": f"/env/bin{os.pathsep}/usr/bin",
        "HOME": "/home/u",
        "PROXY": "http://proxy.example:3128",
        "CUDA_VISIBLE_DEVICES": "0",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    assert "PYTHONHOME" in base  # the base is not modified
    assert scrubbed_environ({}, env_bin=Path("/env/bin"))["PATH"] == "/env/bin"
    assert "PATH" not in scrubbed_environ({})
