"""An environment stays as it was built: what a recipe (or anyone) changed in it is seen,
and an env so changed is never run in again.

An env is keyed on its lock and reused by every probe of that lock, in this run and later
ones; a recipe that installs into its own env (``pip install`` in a repro script, a
``.pth`` file, a ``sitecustomize.py``) would make every later probe there run in a world
its key does not describe. So the build records the env's *entries*
(:func:`envbisect.envs.entries`: the names in its ``site-packages`` and its scripts
directory, ``bin/``) in the env's marker. Every lookup of a built env looks again
(:meth:`envbisect.envs.EnvManager.lookup_key`: an env unlike its build is tainted, so the
probe, a build ahead or ``show --rerun`` gets it built anew), and so does a probe after its
recipe (a recipe that changed the entries taints the env, and its probe is untestable: it
broke the recipe contract, "the environment under test must contain only what the recipe
asked for"). A tainted env
carries :data:`TAINTED` (its reason) beside its marker: lookups treat it as absent, and
the next build of its key moves it aside.

What this sees: a package installed, upgraded (its ``.dist-info`` is renamed) or removed, a
module, ``.pth`` file or script added or removed. What it does not: a file edited in place
inside a package that stays installed (the names do not change). ``__pycache__`` is not an
entry: the interpreter writes it when a recipe imports a top-level module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Beside the marker in a tainted env: why it is no longer used.
TAINTED = "envbisect-tainted"

_SHOWN = 5


def describe(before: Sequence[str] | None, after: Sequence[str] | None) -> str | None:
    """What changed between two listings ("added a, b; removed c"); None when nothing did
    (or when either listing is unknown: nothing can be told)."""
    if before is None or after is None or list(before) == list(after):
        return None
    old, new = set(before), set(after)
    changes = (("added", new - old), ("removed", old - new))
    parts = [f"{word} {_names(sorted(names))}" for word, names in changes if names]
    return "; ".join(parts) or None


def _names(names: list[str]) -> str:
    more = len(names) - _SHOWN
    return ", ".join(names[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


def taint(root: Path, why: str) -> None:
    """Mark the env at ``root`` as no longer used (best effort: an env whose mark cannot be
    written is at worst checked again by its next probe, which sees the same change)."""
    try:
        (root / TAINTED).write_text(why + "\n")
    except OSError:
        pass


def is_tainted(root: Path) -> bool:
    return (root / TAINTED).exists()
