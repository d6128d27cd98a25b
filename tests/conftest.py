"""Shared fixtures: built wheels, a local package index, the planted regression, uv.

Integration tests install real wheels with real uv from a real HTTP index on
127.0.0.1; these fixtures provide those parts. The planted scenario (project
``planted``, ``VALUE`` 1 before 1.6 and 2 from 1.6 on, plus a yanked release, a
foreign-platform-only release, a pre-release and an sdist-only release) is built once
per session because its files never change; each test gets its own index serving
them, so tests may publish or prune files without affecting one another.

pytest runs with ``--import-mode=importlib``, which does not put ``tests/`` on
``sys.path``; it is added here so tests can ``from support.wheels import build_wheel``.
Nothing in ``tests/`` is named ``bisect``, so the standard library module stays intact.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).parent))

from support.index_server import LocalIndex  # noqa: E402 - needs the sys.path entry above
from support.wheels import build_sdist, build_wheel  # noqa: E402

PLANTED_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
#: The platform tag of the one release that has no wheel for this (Linux) host.
FOREIGN_TAG = "cp311-cp311-win_amd64"


@dataclass(frozen=True)
class PlantedVersion:
    """One release of ``planted`` as published by the planted index."""

    version: str
    value: int  # planted.VALUE in this release: 1 = good, 2 = bad
    path: Path  # the built wheel or sdist
    upload_time: datetime
    yanked: bool = False
    sdist_only: bool = False
    foreign_only: bool = False  # only a wheel for another platform (FOREIGN_TAG)

    @property
    def prerelease(self) -> bool:
        return Version(self.version).is_prerelease

    @property
    def installable(self) -> bool:
        """Would a default candidate list (no --pre, wheels only, this host) keep it?"""
        return not (self.yanked or self.sdist_only or self.foreign_only or self.prerelease)


@dataclass
class PlantedIndex:
    """A running index serving every planted release, and what was planted."""

    index: LocalIndex
    versions: tuple[PlantedVersion, ...]  # ascending upload time (= ascending version)
    last_good: str = "1.5"
    first_bad: str = "1.6"

    @property
    def url(self) -> str:
        return self.index.url

    def get(self, version: str) -> PlantedVersion:
        return next(v for v in self.versions if v.version == version)

    @property
    def installable(self) -> list[str]:
        """The versions a default search should consider, ascending."""
        return [v.version for v in self.versions if v.installable]


def _planted_plan() -> list[tuple[str, dict[str, object]]]:
    """(version, traits) for every planted release, in upload order."""
    plan: list[tuple[str, dict[str, object]]] = [("0.9", {"sdist_only": True})]
    plan += [(f"1.{minor}", {"yanked": minor == 3, "foreign_only": minor == 7}) for minor in range(10)]
    plan += [("2.0", {}), ("2.1rc1", {})]
    return plan


@pytest.fixture(scope="session")
def planted_versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantedVersion, ...]:
    """Build the planted releases once per session (they are immutable)."""
    dest = tmp_path_factory.mktemp("planted-dists")
    built = []
    for week, (version, traits) in enumerate(_planted_plan()):
        value = 2 if Version(version) >= Version("1.6") else 1
        files = {"planted/__init__.py": f'__version__ = "{version}"\nVALUE = {value}\n'}
        if traits.get("sdist_only"):
            path = build_sdist(dest, "planted", version, files=files, requires_python=">=3.8")
        else:
            tag = FOREIGN_TAG if traits.get("foreign_only") else "py3-none-any"
            path = build_wheel(dest, "planted", version, files=files, tag=tag, requires_python=">=3.8")
        built.append(PlantedVersion(version, value, path, PLANTED_START + timedelta(weeks=week), **traits))  # type: ignore[arg-type]
    return tuple(built)


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    """A fresh directory for dists a test builds."""
    path = tmp_path / "dists"
    path.mkdir()
    return path


@pytest.fixture
def local_index(tmp_path: Path) -> Iterator[Callable[..., LocalIndex]]:
    """Factory: ``local_index(flavour="both", auth=None, page_max_age=0)`` -> a started LocalIndex.

    Every index it starts is stopped at teardown.
    """
    started: list[LocalIndex] = []

    def make(*, flavour: str = "both", auth: tuple[str, str] | None = None, page_max_age: int = 0) -> LocalIndex:
        index = LocalIndex(tmp_path / f"index-{len(started)}", flavour=flavour, auth=auth,
                           page_max_age=page_max_age).start()
        started.append(index)
        return index

    yield make
    for index in started:
        index.stop()


@pytest.fixture
def planted_index_factory(
    local_index: Callable[..., LocalIndex], planted_versions: tuple[PlantedVersion, ...]
) -> Callable[..., PlantedIndex]:
    """Factory: ``planted_index_factory(flavour="both", auth=None)`` -> PlantedIndex."""

    def make(*, flavour: str = "both", auth: tuple[str, str] | None = None) -> PlantedIndex:
        index = local_index(flavour=flavour, auth=auth)
        for release in planted_versions:
            index.add(release.path, upload_time=release.upload_time,
                      yanked="planted: broken build" if release.yanked else False)
        return PlantedIndex(index, planted_versions)

    return make


@pytest.fixture
def planted_index(planted_index_factory: Callable[..., PlantedIndex]) -> PlantedIndex:
    """The planted regression on a content-negotiating index (JSON and HTML)."""
    return planted_index_factory()


@pytest.fixture(scope="session")
def uv_bin() -> Path:
    """The uv binary installed with the dev environment."""
    from uv import find_uv_bin

    return Path(find_uv_bin())
