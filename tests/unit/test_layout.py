"""Layout guard: nothing in this repository may shadow the stdlib ``bisect`` module.

The CLI is called ``bisect`` and the source root is ``bisect/`` (like ``src/``), so one
stray ``bisect/__init__.py`` or ``bisect.py`` would make ``import bisect`` load this
project instead of the standard library, breaking every library that bisects lists
(including pytest's own dependencies). These tests fail the moment that happens.
"""

from __future__ import annotations

import bisect
import os
import sys
import sysconfig
import tomllib
from pathlib import Path

import envbisect

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOT = REPO / "bisect"
#: Directories that are not part of the repository's own files.
PRUNED = {".venv", ".git", "cache", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules", "dist", "build"}


def _repo_paths() -> list[Path]:
    """Every file and directory in the repository, skipping environments and caches."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in PRUNED and not d.endswith(".egg-info")]
        found.extend(Path(folder, name) for name in [*dirs, *files])
    return found


def test_source_root_is_not_a_package() -> None:
    assert SOURCE_ROOT.is_dir()
    assert not (SOURCE_ROOT / "__init__.py").exists(), "bisect/ must stay a source root, never a package"
    assert not (SOURCE_ROOT / "conftest.py").exists()
    assert sorted(p.name for p in SOURCE_ROOT.glob("*.py")) == [], "no modules directly in bisect/"


def test_no_tests_inside_source_root() -> None:
    strays = [p for p in SOURCE_ROOT.rglob("*.py") if p.name.startswith("test_") or p.name == "conftest.py"]
    assert strays == []


def test_nothing_named_bisect_is_importable_from_the_repo() -> None:
    """No ``bisect.py`` anywhere, and no other ``bisect`` directory at all."""
    shadows = [
        p.relative_to(REPO).as_posix()
        for p in _repo_paths()
        if p.name in {"bisect.py", "bisect.pyi"} or p.name.startswith("bisect.cpython") or (p.name == "bisect" and p != SOURCE_ROOT)
    ]
    assert shadows == []


def test_import_bisect_is_the_standard_library() -> None:
    assert bisect.bisect_left([1, 2, 3], 2) == 1
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(bisect.__file__).resolve().is_relative_to(stdlib)
    assert sys.modules["bisect"] is bisect


def test_envbisect_comes_from_the_source_root() -> None:
    assert Path(envbisect.__file__).resolve().parent == SOURCE_ROOT / "envbisect"


def test_wheel_ships_only_envbisect() -> None:
    """The built wheel must not install a top-level ``bisect`` package either."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert packages and all(Path(p).name != "bisect" for p in packages)
