"""Bad input: one clear line on stderr naming the problem and the fix, a non-zero exit,
and nothing written half-way (no run, no probe, no environment)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys

import pytest

from support.cli import PLANTED_BODY, assert_one_line_error, bisect_cli, cli_env, write_recipe


def _closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://user:hunter2secret@127.0.0.1:{port}/simple"


def _nothing_recorded(cache):
    db = cache / "results.db"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0
            assert con.execute("select count(*) from probes").fetchone()[0] == 0
        finally:
            con.close()
    envs = cache / "envs"
    assert not envs.exists() or not [p for p in envs.iterdir() if not p.name.startswith(".lock")]


@pytest.fixture
def recipe(tmp_path):
    return write_recipe(tmp_path / "planted_recipe.py", PLANTED_BODY)


def test_missing_recipe(tmp_path):
    proc = bisect_cli("run", "nope.py", "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "nope.py does not exist")


@pytest.mark.parametrize("make, what", [
    (lambda p: p.mkdir(), "is a directory"),
    (os.mkfifo, "is a FIFO"),  # never opened: the run would wait for a writer for ever
    (lambda p: p.symlink_to(p.parent / "gone.py"), "is a symbolic link to nothing"),
])
def test_a_recipe_path_that_is_no_file_says_what_it_is(tmp_path, make, what):
    make(tmp_path / "recipe.py")
    proc = bisect_cli("run", "recipe.py", "--cache-dir", str(tmp_path / "c"), cwd=tmp_path, timeout=60)
    assert_one_line_error(proc, f"recipe.py {what}", "pass the path of a recipe script")
    _nothing_recorded(tmp_path / "c")


def test_recipe_without_pep723_block(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text("print('hi')\n")
    proc = bisect_cli("run", str(path), "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "no PEP 723", "add one")


def test_recipe_with_invalid_toml(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("# /// script\n# dependencies = [\"a\"\n# ///\n")
    proc = bisect_cli("run", str(path), "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "not valid TOML")


def test_unknown_package(tmp_path, planted_index, recipe):
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--package", "no-such-pkg", "--index-url", planted_index.url,
                      "--cache-dir", str(cache), cwd=tmp_path)
    assert_one_line_error(proc, "no-such-pkg", "not found")
    _nothing_recorded(cache)


def test_invalid_specifier(tmp_path, planted_index, recipe):
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--range", "=>1.0", "--index-url", planted_index.url,
                      "--cache-dir", str(cache), cwd=tmp_path)
    assert_one_line_error(proc, "=>1.0")
    _nothing_recorded(cache)


def test_an_invalid_with_requirement_is_one_line(tmp_path, planted_index, recipe):
    """packaging's message has a second line with a caret under the input: only its first
    line is quoted."""
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--with", "numpy==abc", "--index-url", planted_index.url,
                      "--cache-dir", str(cache), cwd=tmp_path)
    assert_one_line_error(proc, "--with 'numpy==abc' is not a requirement", "use e.g. --with numpy==1.26.4")
    _nothing_recorded(cache)


def test_good_newer_than_bad(tmp_path, planted_index, recipe):
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--good", "1.8", "--bad", "1.2", "--index-url", planted_index.url,
                      "--cache-dir", str(cache), cwd=tmp_path)
    assert_one_line_error(proc, "--bad 1.2 must be newer than --good 1.8")
    _nothing_recorded(cache)


def test_good_that_is_not_a_candidate(tmp_path, planted_index, recipe):
    proc = bisect_cli("run", str(recipe), "--good", "1.3", "--index-url", planted_index.url,
                      "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "--good 1.3", "yanked")


def test_empty_candidate_list_says_why(tmp_path, planted_index, recipe):
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--range", "==1.7", "--index-url", planted_index.url,
                      "--cache-dir", str(cache), cwd=tmp_path)
    assert_one_line_error(proc, "planted", "wheel", "windows")
    _nothing_recorded(cache)


def test_unreachable_index_hides_credentials(tmp_path, recipe):
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--index-url", _closed_port_url(), "--cache-dir", str(cache),
                      cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "cannot reach", code=6)
    assert "hunter2secret" not in proc.stderr + proc.stdout
    _nothing_recorded(cache)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission bits do not stop it")
def test_unwritable_cache_dir(tmp_path, recipe):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    proc = bisect_cli("run", str(recipe), "--cache-dir", str(ro / "cache"), cwd=tmp_path)
    assert_one_line_error(proc, "not writable", "--cache-dir", code=6)


def test_cache_dir_that_is_a_file(tmp_path, recipe):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = bisect_cli("run", str(recipe), "--cache-dir", str(blocker / "cache"), cwd=tmp_path)
    assert_one_line_error(proc, "not writable", "--cache-dir", code=6)


@pytest.mark.parametrize("command", [("run", "RECIPE"), ("show", "1"), ("history",), ("report", "1"), ("cache", "info"),
                                     ("cache", "prune", "--max-size", "1GB")])
@pytest.mark.parametrize("make, what", [(lambda p: p.write_text(""), "is a regular file"), (os.mkfifo, "is a FIFO"),
                                        (lambda p: p.symlink_to(p.parent / "gone"), "is a symbolic link to nothing")])
def test_a_cache_dir_that_is_no_directory_is_named_as_what_it_is(tmp_path, recipe, command, make, what):
    """Every command that reads or writes the cache says what is there instead of a
    directory (before: run said "not writable (File exists)", cache info "does not exist",
    history "no runs recorded" with exit 0)."""
    cache = tmp_path / "cache"
    make(cache)
    args = [str(recipe) if a == "RECIPE" else a for a in command]
    proc = bisect_cli(*args, "--cache-dir", str(cache), cwd=tmp_path, timeout=60)
    assert_one_line_error(proc, f"cache directory {cache} {what}, not a directory", "--cache-dir", code=6)


def test_no_verify_needs_both_ends(tmp_path, planted_index, recipe):
    proc = bisect_cli("run", str(recipe), "--good", "1.0", "--no-verify", "--index-url", planted_index.url,
                      "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "--no-verify needs both")


def test_bad_regress_mode(tmp_path, planted_index, recipe):
    proc = bisect_cli("run", str(recipe), "--regress", "sometimes", "--index-url", planted_index.url,
                      "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "sometimes", "exit")


def test_package_without_wheels_here_names_platforms_and_the_alternative(tmp_path, local_index, wheel_dir):
    """The tensorflow-metal situation on Linux, on a local index: the plugin has only macOS
    wheels; the run must say so and suggest bisecting the recipe's other package."""
    from support.wheels import build_wheel

    index = local_index()
    for v in ("1.0", "1.1"):
        index.add(build_wheel(wheel_dir, "metalplug", v, tag="py3-none-macosx_12_0_arm64"))
    index.add(build_wheel(wheel_dir, "corepkg", "1.0"))
    recipe = write_recipe(tmp_path / "r.py", "import sys\nsys.exit(0)\n", package="metalplug",
                          deps=("corepkg", "metalplug; sys_platform == 'darwin'"))
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, "no release of metalplug", "macos-arm64", "--package corepkg")


@pytest.mark.parametrize("command", ["show", "report"])
@pytest.mark.parametrize("run_id", ["99999999999999999999999", "0"])
def test_run_ids_sqlite_cannot_hold_are_no_run_not_an_overflow(tmp_path, command, run_id):
    proc = bisect_cli(command, run_id, "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(proc, f"no run {run_id}", "bisect history")


_BUG = """
import sys
import envbisect.cli as cli
import envbisect.recipes as recipes
def boom(*args, **kwargs):
    raise RuntimeError("internal bug near http://user:hunter2secret@127.0.0.1/simple")
recipes.load_recipe = boom  # an unexpected exception inside a command (which imports it lazily)
sys.argv = ["bisect", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_is_one_line_and_a_log_or_the_traceback_with_debug(tmp_path, debug):
    (tmp_path / "cache" / "logs").mkdir(parents=True)
    args = ["--debug"] if debug else []
    proc = subprocess.run([sys.executable, "-c", _BUG, *args, "check", "r.py"], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    logs = list((tmp_path / "cache" / "logs").glob("envbisect-crash-*.log"))
    if debug:
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "internal bug" in proc.stderr
        assert logs == []
        return
    assert proc.returncode == 70
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: envbisect failed unexpectedly (RuntimeError"), proc.stderr
    assert [str(p) for p in logs] and str(logs[0]) in lines[0] and "--debug" in lines[0]
    text = logs[0].read_text()
    assert "Traceback" in text and "boom" in text
    assert "hunter2secret" not in proc.stderr + text


@pytest.mark.parametrize("value", ["0", "-5", "inf"])  # inf: a hung recipe would never end (a recipe's own timeout refuses it too)
def test_a_timeout_that_is_not_positive_is_refused_not_replaced(tmp_path, recipe, value):
    # `--timeout 0` used to be silently replaced by the recipe's timeout.
    proc = bisect_cli("run", str(recipe), f"--timeout={value}", "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(proc, f"--timeout {float(value):g} is not a positive number of seconds")
