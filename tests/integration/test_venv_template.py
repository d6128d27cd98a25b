"""The empty venv every uv build starts from is made once per interpreter by ``uv venv``
and copied (envbisect.venvtemplate): real uv, real interpreters, real directories."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from envbisect.installer import find_interpreter, uv_bin
from envbisect.venvtemplate import copy_empty_venv, template_tag


def _uv_venv(made: list[Path]):
    def make(path: Path) -> None:
        made.append(path)
        subprocess.run([uv_bin(), "venv", "--quiet", "--relocatable", "--python", sys.executable, str(path)],
                       check=True)
    return make


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs if not (a / d).is_symlink())


def test_a_copy_is_the_venv_uv_makes_there_and_uv_venv_runs_once(tmp_path):
    made: list[Path] = []
    tag = template_tag(find_interpreter(None), uv_bin())
    copy_empty_venv(tmp_path, tag, _uv_venv(made), tmp_path / "a")
    copy_empty_venv(tmp_path, tag, _uv_venv(made), tmp_path / "b")
    assert len(made) == 1, "the template is made once"
    assert not made[0].exists(), "made in a staging directory, renamed into place"
    direct = tmp_path / "direct"
    _uv_venv([])(direct)
    assert _same_tree(tmp_path / "b", direct), "a copy is what uv venv makes at that path"
    run = subprocess.run([str(tmp_path / "b" / "bin" / "python"), "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "True"


def test_a_broken_template_is_made_again_and_another_interpreter_gets_its_own(tmp_path):
    interp = find_interpreter(None)
    tag = template_tag(interp, uv_bin())
    (tmp_path / f".{tag}").mkdir()  # no pyvenv.cfg: never a finished template
    made: list[Path] = []
    copy_empty_venv(tmp_path, tag, _uv_venv(made), tmp_path / "a")
    assert len(made) == 1 and (tmp_path / "a" / "pyvenv.cfg").is_file()
    other = type(interp)(interp.path, interp.version + ".1", interp.implementation)
    assert template_tag(other, uv_bin()) != tag, "another Python version: another template"
    assert template_tag(interp, uv_bin() + "-other") != tag, "another uv: another template"


def test_a_failed_making_leaves_no_template_and_propagates(tmp_path):
    tag = template_tag(find_interpreter(None), uv_bin())

    def fails(path: Path) -> None:
        path.mkdir()
        raise RuntimeError("uv venv failed")

    try:
        copy_empty_venv(tmp_path, tag, fails, tmp_path / "a")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure must reach the build")
    assert not (tmp_path / f".{tag}").exists() and not (tmp_path / "a").exists()
    assert not list(tmp_path.glob(".tmp-*")), "the half-made template is removed"


def test_a_removed_template_is_made_again_and_counts_with_the_installer_cache(tmp_path):
    from envbisect.cacheusage import owner_of
    from envbisect.envcache import EnvCache

    envs = tmp_path / "envs"
    envs.mkdir()
    made: list[Path] = []
    tag = template_tag(find_interpreter(None), uv_bin())
    copy_empty_venv(envs, tag, _uv_venv(made), envs / "a")
    assert owner_of(tmp_path, envs / f".{tag}" / "pyvenv.cfg") == "uv", "pruned with the installer cache"
    assert EnvCache(envs).remove_templates() == 1 and not (envs / f".{tag}").exists()
    assert not list(envs.glob(".trash-*")), "renamed away, then deleted"
    copy_empty_venv(envs, tag, _uv_venv(made), envs / "b")
    assert len(made) == 2 and (envs / "b" / "pyvenv.cfg").is_file()
