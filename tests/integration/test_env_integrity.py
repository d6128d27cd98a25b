"""A recipe cannot change the environment later probes run in.

An env is keyed on its lock and reused by every probe (and every later run) of that lock.
A recipe that installs into its env (``pip install`` in a repro script, a ``.pth`` file,
a ``sitecustomize.py``) would make every later probe there run in a world the key does not
describe. The defect these tests guard: the previous version trusted a built env for ever,
so the change one probe's recipe made decided the next probes' verdicts.

All real: ``bisect check`` as a subprocess, real uv, a real index on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import bisect_cli, write_recipe
from support.wheels import build_wheel

#: Writes a ``.pth`` into its own site-packages while the flag file exists; the ``.pth``
#: makes every later interpreter of that env see TOY_PATCHED, and the recipe then fails.
TAINTING_BODY = """
import os, sys, sysconfig
import toypkg
site = sysconfig.get_paths()["purelib"]
if os.path.exists({flag!r}):
    with open(os.path.join(site, "zz_patch.pth"), "w") as f:
        f.write("import os; os.environ['TOY_PATCHED'] = '1'\\n")
sys.exit(1 if os.environ.get("TOY_PATCHED") else 0 if toypkg.VALUE == 1 else 1)
"""


@pytest.fixture
def world(tmp_path, local_index):
    index = local_index()
    index.add(build_wheel(tmp_path / "dists", "toypkg", "1.0",
                          files={"toypkg/__init__.py": '__version__ = "1.0"\nVALUE = 1\n'}))
    flag = tmp_path / "taint-now"
    recipe = write_recipe(tmp_path / "toy.py", TAINTING_BODY.format(flag=str(flag)), package="toypkg",
                          deps=("toypkg",))
    cache = tmp_path / "cache"

    def check(*extra: str) -> dict:
        proc = bisect_cli("check", str(recipe), "--with", "toypkg==1.0", "--index-url", index.url,
                          "--cache-dir", str(cache), "--json", *extra, cwd=tmp_path, check_json=True)
        return proc.json

    return flag, cache, check


def _site(cache: Path) -> Path:
    [env] = [m.parent for m in (cache / "envs").glob("*/envbisect-env.json")]
    [site] = env.glob("lib/python*/site-packages")
    return site


def test_a_probe_whose_recipe_changed_its_env_is_untestable_and_the_env_is_never_used_again(world):
    flag, cache, check = world
    flag.touch()
    first = check()
    assert (first["outcome"], first["verdict"]) == ("error", "untestable"), first
    assert "changed its environment" in first["reason"] and "zz_patch.pth" in first["reason"], first["reason"]
    flag.unlink()
    # A stored verdict of that probe holds for the same recipe and lock (it would do it again) ...
    again = check()
    assert (again["verdict"], again["reused"]) == ("untestable", True), again
    # ... and a probe that runs again gets a fresh env: the .pth the recipe left is gone.
    fresh = check("--no-reuse")
    assert (fresh["outcome"], fresh["reused"]) == ("good", False), fresh
    assert not (_site(cache) / "zz_patch.pth").exists()


def test_an_env_changed_after_its_build_is_rebuilt_before_a_probe_runs_in_it(world):
    """Changed from outside (by hand, by a tool, by a recipe an earlier envbisect ran): the
    next probe finds the env unlike its build and builds it again before running."""
    _flag, cache, check = world
    assert check()["outcome"] == "good"
    stray = _site(cache) / "zz_patch.pth"
    stray.write_text("import os; os.environ['TOY_PATCHED'] = '1'\n")
    rerun = check("--no-reuse")
    assert (rerun["outcome"], rerun["reused"]) == ("good", False), rerun
    assert not (_site(cache) / "zz_patch.pth").exists()
    marker = json.loads(next((cache / "envs").glob("*/envbisect-env.json")).read_text())
    assert "zz_patch.pth" not in marker["entries"]
