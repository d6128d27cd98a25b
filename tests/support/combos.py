"""A package universe of several release trains, for matrix, date and culprit tests.

Real regressions come from combinations (TensorFlow × tensorflow-metal × Keras), so these
tests need more than one package: ``core``, a ``plugin`` whose releases each require a
``core`` range (plugin 1.x needs core < 2, plugin 2.x needs core >= 2, so half the
plugin/core pairs are incompatible), and ``drift``, a dependency that keeps releasing
underneath. Upload times are spread over 2024 (both index flavours publish them), and on
one *release day* (1 Aug) plugin 2.1, drift 1.3 and core 2.2 all come out, so the
resolved environment moves three packages at once and culprit isolation has to tell
them apart. Which release is "bad" is decided by the recipe (:func:`combo_recipe`), so one
index serves every planted culprit: the plugin, the drift, or the two together.

Used by ``tests/integration/test_{matrix,bydate,culprits}.py`` and ``bench/bench_combos.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .cli import write_recipe
from .index_server import LocalIndex
from .wheels import build_wheel


def _at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ComboRelease:
    package: str
    version: str
    upload_time: datetime
    requires: tuple[str, ...] = ()


#: Every release, in upload order. The comments say what the env resolves to afterwards.
RELEASES: tuple[ComboRelease, ...] = (
    ComboRelease("core", "1.0", _at(1, 5)),
    ComboRelease("drift", "1.0", _at(1, 10)),
    ComboRelease("plugin", "1.0", _at(1, 20), ("core>=1,<2",)),  # first day all three exist
    ComboRelease("core", "1.1", _at(2, 10)),
    ComboRelease("plugin", "1.1", _at(3, 1), ("core>=1,<2",)),
    ComboRelease("drift", "1.1", _at(3, 20)),
    ComboRelease("core", "2.0", _at(4, 1)),  # held back by plugin 1.1 (core < 2)
    ComboRelease("plugin", "2.0", _at(4, 15), ("core>=2",)),  # plugin and core move together
    ComboRelease("drift", "1.2", _at(5, 10)),
    ComboRelease("core", "2.1", _at(6, 1)),
    # Release day: three packages the same day, a few hours apart.
    ComboRelease("plugin", "2.1", _at(8, 1, 9), ("core>=2",)),
    ComboRelease("drift", "1.3", _at(8, 1, 12)),
    ComboRelease("core", "2.2", _at(8, 1, 15)),
    ComboRelease("drift", "1.4", _at(9, 10)),
)

#: The release day and the day before it that has a release (the expected boundary).
RELEASE_DAY = "2024-08-01"
DAY_BEFORE = "2024-06-01"
#: Every UTC day on which one of the three packages published, ascending.
ALL_DAYS = tuple(sorted({r.upload_time.date().isoformat() for r in RELEASES}))

#: Recipe conditions (Python expressions over V(name) -> version tuple) for each culprit.
BAD_WHEN = {
    "plugin": "V('plugin') >= (2, 1)",
    "drift": "V('drift') >= (1, 3)",
    "both": "V('plugin') >= (2, 1) and V('drift') >= (1, 3)",
    # drift 1.2 removed an API that plugins before 2.0 used; plugin 2.1 is the real bug.
    "old-plugins-break": "V('plugin') >= (2, 1) or (V('drift') >= (1, 2) and V('plugin') < (2, 0))",
    "matrix": "V('plugin') >= (2, 1) and V('core') >= (2, 1)",
}

_RECIPE_BODY = """
import json, os, sys
from importlib.metadata import version

def V(name):
    return tuple(int(x) for x in version(name).split("."))

bad = {condition}
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({{"max_abs_diff": 41.7 if bad else 0.0, "plugin": version("plugin")}}, fh)
sys.exit(1 if bad else 0)
"""


def build_combo_wheels(dest: Path) -> dict[tuple[str, str], Path]:
    """Write one tiny pure wheel per release into ``dest``."""
    return {(r.package, r.version): build_wheel(dest, r.package, r.version, requires_dist=r.requires)
            for r in RELEASES}


def publish(index: LocalIndex, wheels: dict[tuple[str, str], Path]) -> LocalIndex:
    """Publish every release on ``index`` with its upload time; returns the index."""
    for r in RELEASES:
        index.add(wheels[(r.package, r.version)], upload_time=r.upload_time)
    return index


def combo_recipe(path: Path, culprit: str, *, package: str = "plugin",
                 deps: tuple[str, ...] = ("core", "plugin", "drift")) -> Path:
    """A recipe that is bad when :data:`BAD_WHEN` ``[culprit]`` holds, with a metric."""
    return write_recipe(path, _RECIPE_BODY.format(condition=BAD_WHEN[culprit]), package=package, deps=deps)


def start_combo_index(root: Path, *, flavour: str = "both") -> LocalIndex:
    """Build the wheels under ``root`` and start an index serving them (caller stops it)."""
    return publish(LocalIndex(root / f"index-{flavour}", flavour=flavour).start(), build_combo_wheels(root / "wheels"))
