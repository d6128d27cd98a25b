"""Wrong value types in a recipe or bisect.toml, and malformed PEP 691 JSON from an index,
through the real CLI: one ``error:`` line naming where and what, the input-error (2) or
index-failure (6) exit status, no traceback, nothing recorded."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from support.cli import assert_one_line_error, bisect_cli

CLOSED_INDEX = "http://127.0.0.1:9/simple"  # never reached: the recipe is refused first


def nothing_recorded(cache) -> None:
    db = cache / "results.db"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0
        finally:
            con.close()
    envs = cache / "envs"
    assert not envs.exists() or not [p for p in envs.iterdir() if not p.name.startswith(".lock")]


def block(top: str, tool: str) -> str:
    return (f"# /// script\n# {top}\n# [tool.envbisect]\n# package = \"toypkg\"\n# {tool}\n# ///\n"
            "import sys\nsys.exit(0)\n")


@pytest.mark.parametrize(("top", "tool", "line", "needles"), [
    ('dependencies = ["toypkg"]', "python = 3.11", 5,
     ("[tool.envbisect] python: must be a Python version string", "not 3.11 (a float)")),
    ('dependencies = ["toypkg"]', "with = 5", 5,
     ("[tool.envbisect] with: must be a requirement string or a list of them", "not 5 (an integer)")),
    ('dependencies = ["toypkg"]', 'pre = "false"', 5,
     ("[tool.envbisect] pre: must be true or false", "not 'false' (a string)")),
    ('dependencies = ["toypkg"]', 'timeout = "600"', 5, ("[tool.envbisect] timeout: must be a positive number",)),
    ('dependencies = "toypkg"', "variant = 'cpu'", 2,
     ("dependencies: must be a list of requirement strings", "not 'toypkg' (a string)")),
])
def test_run_refuses_a_recipe_with_a_wrong_type(tmp_path, top, tool, line, needles):
    recipe = tmp_path / "typed.py"
    recipe.write_text(block(top, tool))
    cache = tmp_path / "c"
    proc = bisect_cli("run", str(recipe), "--index-url", CLOSED_INDEX, "--cache-dir", str(cache), cwd=tmp_path)
    assert_one_line_error(proc, f"{recipe.resolve()}:{line}: ", *needles, code=2)
    nothing_recorded(cache)


def test_run_refuses_a_package_that_is_a_list(tmp_path):
    recipe = tmp_path / "typed.py"
    recipe.write_text('# /// script\n# dependencies = ["x"]\n# [tool.envbisect]\n# package = ["x"]\n# ///\n')
    proc = bisect_cli("run", str(recipe), "--index-url", CLOSED_INDEX, "--cache-dir", str(tmp_path / "c"),
                      cwd=tmp_path)
    assert_one_line_error(proc, ":4: [tool.envbisect] package: must be a package name string", "(an array)", code=2)


def test_watch_reports_wrong_types_in_bisect_toml_and_in_its_recipes(tmp_path):
    (tmp_path / "bad.py").write_text(block('dependencies = ["toypkg"]', "with = 5"))
    (tmp_path / "ok.py").write_text(block('dependencies = ["toypkg"]', "timeout = 30"))
    config = tmp_path / "bisect.toml"
    config.write_text('[[watch]]\nrecipe = "bad.py"\n\n[[watch]]\nrecipe = "ok.py"\npre = "false"\nwith = 5\n')
    proc = bisect_cli("watch", "--once", "--config", str(config), "--cache-dir", str(tmp_path / "cache"),
                      cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "has 3 mistake(s)" in proc.stderr
    for expected in (f"{config}:2: watch[1].recipe: recipe {(tmp_path / 'bad.py').resolve()}:5: "
                     "[tool.envbisect] with: must be a requirement string or a list of them",
                     f"{config}:6: watch[2].pre: must be true or false, not 'false' (a string)",
                     f"{config}:7: watch[2].with: must be a list of requirement strings"):
        assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "cache" / "results.db").exists()


@pytest.mark.parametrize("make, what", [
    (os.mkfifo, "it is a FIFO, not a regular file"),  # read, it would wait for a writer for ever
    (lambda p: p.mkdir(), "it is a directory, not a regular file"),
    (lambda p: p.write_text("#" * (1024 * 1024 + 1)), "larger than 1024 KiB"),
])
def test_a_watch_configuration_that_is_no_plain_file_is_one_error_line(tmp_path, make, what):
    config = tmp_path / "bisect.toml"
    make(config)
    proc = bisect_cli("watch", "--once", "--config", str(config), "--cache-dir", str(tmp_path / "cache"),
                      cwd=tmp_path, timeout=60)
    assert_one_line_error(proc, f"cannot read {config}: {what}", "pass --config", code=2)
    assert not (tmp_path / "cache" / "results.db").exists()


GOOD_FILE = {"filename": "toypkg-1.0-py3-none-any.whl", "url": "/files/toypkg-1.0-py3-none-any.whl",
             "hashes": {"sha256": "a" * 64}}


def _page(**changes) -> str:
    entry = {k: v for k, v in {**GOOD_FILE, **changes}.items() if v is not None}
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "toypkg", "files": [entry]})


@pytest.mark.parametrize(("body", "problem"), [
    ('{"files": [', "it is not valid JSON (Expecting value"),
    (_page(filename=None), 'files[0] has no "filename"'),
    (_page(url=5), 'files[0]."url" must be a non-empty string, not 5'),
    (_page(hashes="zzz"), '"hashes" must be an object of hash names to hex digests, not "zzz"'),
    (_page(**{"upload-time": 12345}), '"upload-time" must be an ISO 8601 string, not 12345'),
])
def test_versions_on_an_index_serving_invalid_json_is_one_line_and_exit_6(tmp_path, local_index, body, problem):
    index = local_index(flavour="json")
    index.override("toypkg", body)
    proc = bisect_cli("versions", "toypkg", "--index-url", index.url, "--cache-dir", str(tmp_path / "c"),
                      cwd=tmp_path)
    assert_one_line_error(proc, f"package index {index.url}/toypkg/ sent an invalid PEP 691 project page: ",
                          problem, code=6)


def test_invalid_json_from_a_private_index_does_not_show_its_password(tmp_path, local_index):
    index = local_index(flavour="json", auth=("user", "hunter2secret"))
    index.override("toypkg", _page(url=5))
    proc = bisect_cli("versions", "toypkg", "--index-url", index.auth_url, "--cache-dir", str(tmp_path / "c"),
                      cwd=tmp_path)
    assert_one_line_error(proc, f"127.0.0.1:{index.port}/simple/toypkg/", '"url" must be', code=6)
    assert "hunter2secret" not in proc.stderr + proc.stdout
