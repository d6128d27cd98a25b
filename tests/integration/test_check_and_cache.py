"""``bisect check`` (one recorded probe) and ``bisect cache info|prune|clear``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.cli import PLANTED_BODY, assert_one_line_error, bisect_cli, cli_env, write_recipe


def _check(recipe, index, cache, *extra):
    return bisect_cli("check", str(recipe), "--index-url", index.url, "--cache-dir", str(cache), "--json",
                      *extra, cwd=cache.parent, check_json=True)


def test_check_records_one_probe_with_metrics_and_resolved_versions(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import json, os, sys, planted
        json.dump({"value": planted.VALUE, "max_abs_diff": 0.5}, open(os.environ["ENVBISECT_RESULT"], "w"))
        sys.exit(0 if planted.VALUE == 1 else 1)
    """)
    cache = tmp_path / "cache"
    bad = _check(recipe, planted_index, cache)
    assert bad.returncode == 1  # newest (2.0) is bad
    assert bad.json["outcome"] == "bad" and bad.json["resolved"]["planted"] == "2.0"
    assert bad.json["metrics"] == {"value": 2, "max_abs_diff": 0.5}
    good = _check(recipe, planted_index, cache, "--with", "planted==1.2")
    assert good.returncode == 0 and good.json["resolved"]["planted"] == "1.2"
    again = _check(recipe, planted_index, cache, "--with", "planted==1.2")
    assert again.json["reused"] is True and again.json["executed"] == 0
    text = bisect_cli("check", str(recipe), "--with", "planted==1.2", "--index-url", planted_index.url,
                      "--cache-dir", str(cache), cwd=tmp_path)
    assert "good: exit 0" in text.stdout and "planted==1.2" in text.stdout and "max_abs_diff" in text.stdout
    hist = bisect_cli("history", "--json", "--cache-dir", str(cache), cwd=tmp_path)
    assert [r["kind"] for r in json.loads(hist.stdout)] == ["check"] * 4


def test_check_bad_metrics_are_a_note_not_a_crash(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import os
        open(os.environ["ENVBISECT_RESULT"], "w").write("{not json")
    """)
    res = _check(recipe, planted_index, tmp_path / "cache").json
    assert res["outcome"] == "good" and res["metrics"] is None
    assert "not valid JSON" in res["metrics_note"]


def _strict(text: str):
    """Parse JSON the way strict parsers do: NaN and Infinity are not JSON."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinite_metrics_are_valid_json_and_still_a_divergence(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import json, os
        json.dump({"max_abs_diff": float("nan"), "big": float("inf"), "ok": 0.5},
                  open(os.environ["ENVBISECT_RESULT"], "w"))
    """)
    cache = tmp_path / "cache"
    proc = bisect_cli("check", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache), "--json",
                      "--threshold", "max_abs_diff>1e-3", cwd=tmp_path)
    res = _strict(proc.stdout)
    assert res["metrics"] == {"max_abs_diff": "NaN", "big": "Infinity", "ok": 0.5}
    assert res["outcome"] == "bad" and proc.returncode == 1, "a NaN metric is a divergence, never a pass"
    report = bisect_cli("report", str(res["run_id"]), "--format", "json", "--cache-dir", str(cache), cwd=tmp_path)
    assert _strict(report.stdout)["probe_rows"][0]["metrics"]["max_abs_diff"] == "NaN"
    _strict(bisect_cli("show", str(res["run_id"]), "--json", "--cache-dir", str(cache), cwd=tmp_path).stdout)


def test_check_missing_import_is_an_error_with_the_message(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import planted
        import numpy_that_is_not_declared
    """)
    proc = _check(recipe, planted_index, tmp_path / "cache")
    assert proc.returncode == 8, "an error is not 'inconclusive' (4)"
    assert proc.json["outcome"] == "error"
    assert "numpy_that_is_not_declared" in proc.json["stderr_tail"]
    assert proc.json["reason"] == "uncaught ModuleNotFoundError: No module named 'numpy_that_is_not_declared'"


def test_uncaught_assertion_error_is_bad(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import planted
        assert planted.VALUE == 1, "planted changed"
    """)
    proc = _check(recipe, planted_index, tmp_path / "cache")
    assert proc.returncode == 1 and proc.json["outcome"] == "bad"
    ok = _check(recipe, planted_index, tmp_path / "cache", "--with", "planted==1.0")
    assert ok.returncode == 0 and ok.json["outcome"] == "good"


def test_check_with_uninstallable_requirement_says_which_and_why(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    proc = _check(recipe, planted_index, tmp_path / "cache", "--with", "planted==1.7")
    assert proc.returncode == 125
    assert proc.json["outcome"] == "skip"
    assert proc.json["reason"].startswith("install failed:") and "planted" in proc.json["reason"]


def test_cache_info_prune_and_clear_respect_envs_in_use(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    cache = tmp_path / "cache"
    for v in ("1.0", "1.1", "1.2"):
        _check(recipe, planted_index, cache, "--with", f"planted=={v}")
    info = json.loads(bisect_cli("cache", "info", "--json", "--cache-dir", str(cache), cwd=tmp_path).stdout)
    assert info["environments"] == 3
    envs = sorted((p for p in (cache / "envs").iterdir() if not p.name.startswith(".")),
                  key=lambda p: (p / "envbisect-env.json").stat().st_mtime)
    # Mark the least recently used env as in use by a live process: prune must keep it.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (envs[0] / ".envbisect-in-use").mkdir(exist_ok=True)
        (envs[0] / ".envbisect-in-use" / str(holder.pid)).write_text("")
        proc = bisect_cli("cache", "prune", "--max-size", "0", "--cache-dir", str(cache), cwd=tmp_path)
        assert proc.returncode == 0 and "removed 2" in proc.stdout
        left = [p for p in (cache / "envs").iterdir() if not p.name.startswith(".")]
        assert left == [envs[0]]
    finally:
        holder.kill()
        holder.wait()
    bad = bisect_cli("cache", "prune", "--max-size", "lots", "--cache-dir", str(cache), cwd=tmp_path)
    assert bad.returncode == 2 and "not a size" in bad.stderr
    cleared = bisect_cli("cache", "clear", "--cache-dir", str(cache), cwd=tmp_path)
    assert cleared.returncode == 0
    assert not [p for p in (cache / "envs").iterdir() if not p.name.startswith(".")]
    assert (cache / "results.db").exists(), "clear keeps the results unless --all"


def test_pip_installer_backend_builds_the_same_answer(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(recipe), "--installer", "pip", "--good", "1.4", "--bad", "1.8",
                      "--index-url", planted_index.url, "--cache-dir", str(cache), "--json",
                      cwd=tmp_path, check_json=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (proc.json["last_good"], proc.json["first_bad"]) == ("1.5", "1.6")
    marker = next((cache / "envs").glob("*/envbisect-env.json")).read_text()
    assert '"installer": "pip"' in marker


def test_python_option_finds_an_installed_interpreter_and_never_downloads(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", """
        import json, os, platform, sys
        json.dump({"python": platform.python_version()}, open(os.environ["ENVBISECT_RESULT"], "w"))
    """)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    ok = _check(recipe, planted_index, tmp_path / "cache", "--python", here)
    assert ok.returncode == 0 and ok.json["metrics"]["python"].startswith(here)
    missing = bisect_cli("check", str(recipe), "--python", "3.4", "--index-url", planted_index.url,
                         "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert missing.returncode == 2 and "no Python 3.4 interpreter found" in missing.stderr


def test_a_python_path_that_is_no_interpreter_says_what_it_is(tmp_path, planted_index):
    """A path is not something to `uv python install`: the error says what is there."""
    recipe = write_recipe(tmp_path / "r.py", "pass\n")
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    os.mkfifo(tmp_path / "fifo")
    for given, why in ((str(fake), "is no Python interpreter uv can use"), (str(tmp_path / "fifo"), "is a FIFO"),
                       ("./nopy", "does not exist")):
        proc = bisect_cli("check", str(recipe), "--python", given, "--index-url", planted_index.url,
                          "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
        assert_one_line_error(proc, f"--python {given} {why}", "a version such as 3.11")


def test_stray_uv_settings_in_the_environment_do_not_change_what_is_installed(tmp_path, planted_index):
    """UV_EXCLUDE_NEWER (or an index strategy) in the user's shell must not silently change
    the environments: only envbisect's recorded settings decide what gets installed."""
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)
    env = cli_env(UV_EXCLUDE_NEWER="2024-01-20T00:00:00Z")  # would hide every planted release after 1.1
    proc = bisect_cli("check", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(tmp_path / "c"),
                      "--json", cwd=tmp_path, env=env, check_json=True)
    assert proc.json["resolved"]["planted"] == "2.0"
