"""The benchmark's fixture: a local index of N ``benchpkg`` releases with a planted change.

The benchmark must measure envbisect, not the network or a build backend, so every
release is a tiny pure wheel written by the test kit (``tests/support/wheels.py``) and
served by the test kit's real HTTP index on 127.0.0.1 (``tests/support/index_server.py``).
Reusing the kit instead of a second index keeps the benchmark honest: it exercises the
same PEP 691/503 pages, ETags and upload times the integration tests do.

Also owns the clean process environment both the ``bisect`` subprocess and the naive
pip loop run in, because this machine's pip configuration (extra indexes, find-links)
would otherwise leak into either side and make the comparison unfair.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# tests/ holds the ``support`` kit; it is not installed, so put it on the path here.
sys.path.insert(0, str(REPO / "tests"))

from support.cli import write_recipe  # noqa: E402
from support.index_server import LocalIndex  # noqa: E402
from support.wheels import build_wheel  # noqa: E402

PACKAGE = "benchpkg"

#: The recipe body: good (exit 0) while ``benchpkg.VALUE == 1``, bad (exit 1) after.
RECIPE_BODY = """
import sys
import benchpkg
sys.exit(0 if benchpkg.VALUE == 1 else 1)
"""

_FIRST_UPLOAD = datetime(2021, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Fixture:
    """One served index plus the facts the benchmark checks the run against."""

    index: LocalIndex
    versions: tuple[str, ...]  # oldest first
    first_bad: str
    recipe: Path

    @property
    def last_good(self) -> str:
        return self.versions[self.versions.index(self.first_bad) - 1]


def version_at(i: int) -> str:
    """Release ``i`` (0-based): 1.0.0, 1.0.1, ... Patch numbers keep ordering trivial."""
    return f"1.0.{i}"


def planted_position(n: int, seed: int) -> int:
    """Index of the first bad release: random but reproducible, never an endpoint, so the
    search has to verify both ends and then narrow the whole range."""
    return random.Random(f"{seed}-{n}").randint(1, n - 1)


def build_fixture(root: Path, n: int, seed: int, *, delay_files_s: float = 0.0, recipe_sleep_s: float = 0.0) -> Fixture:
    """Write ``n`` wheels and a recipe under ``root`` and start an index serving them.

    ``delay_files_s`` makes every wheel download take that long (a big wheel);
    ``recipe_sleep_s`` makes the recipe take that long. The caller stops the index
    (``fixture.index.stop()``)."""
    wheels = root / "wheels"
    bad_from = planted_position(n, seed)
    index = LocalIndex(root / "index", flavour="both", delay_files_s=delay_files_s)
    versions = []
    for i in range(n):
        version = version_at(i)
        value = 1 if i < bad_from else 2
        files = {f"{PACKAGE}/__init__.py": f'__version__ = "{version}"\nVALUE = {value}\n'}
        wheel = build_wheel(wheels, PACKAGE, version, files=files)
        index.add(wheel, upload_time=_FIRST_UPLOAD + timedelta(days=i))
        versions.append(version)
    body = (f"import time\ntime.sleep({recipe_sleep_s})\n" if recipe_sleep_s else "") + RECIPE_BODY
    recipe = write_recipe(root / "recipe.py", body, package=PACKAGE, deps=(PACKAGE,), timeout=60)
    index.start()
    return Fixture(index, tuple(versions), version_at(bad_from), recipe)


def delayed_index_parser(doc: str, sizes: list[int]) -> argparse.ArgumentParser:
    """The options of a benchmark on a delayed index: release counts, wheel delay, recipe
    sleep and the planted change's seed."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sizes)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=20240229)
    return parser


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without installer or envbisect settings.

    ``PIP_*`` goes too: the machine sets ``PIP_FIND_LINKS``, which envbisect honours as a
    find-links source and pip would search; ``PIP_CONFIG_FILE=/dev/null`` (added by the
    naive loop) shuts out pip's global config file with its extra indexes."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "PIP_", "ENVBISECT_", "VIRTUAL_ENV", "CONDA_PREFIX"))}
    env.update(extra)
    return env
