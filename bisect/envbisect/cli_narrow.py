"""The ``bisect narrow`` command: the knob that turns a found regression good.

Kept apart from :mod:`envbisect.cli` (which registers it, like ``matrix``). It parses
options, builds :class:`Settings` (the interpreter and installer default to the ones the
narrowed run used, so its environment is found again, not rebuilt), calls
:func:`envbisect.narrow.narrow_run` and renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from envbisect.cli_options import (AllowBuild, AsJson, CacheDir, ExtraIndex, FindLinks, IndexUrl, NoReuse, Python,
                                   Quiet, open_store, out, print_json, progress_for, run_id_argument, settings_for)
from envbisect.redact import redact

Knobs = typer.Option([], "--knob", help="Only knobs whose name starts with this, e.g. tf.grappler or "
                     "torch.inductor (repeatable; default: every knob that applies).")
NoBisector = typer.Option(False, "--no-compiler-bisector", help="Skip torch's compiler bisector on "
                          "torch.compile recipes.")


def narrow(
    run_id: int = run_id_argument("A found bisection (or a bad `bisect check`) to narrow."),
    knob: List[str] = Knobs,
    no_compiler_bisector: bool = NoBisector,
    python: Optional[str] = Python,
    no_reuse: bool = NoReuse,
    allow_build: bool = AllowBuild,
    index_url: Optional[str] = IndexUrl,
    extra_index_url: List[str] = ExtraIndex,
    find_links: List[str] = FindLinks,
    cache_dir: Optional[Path] = CacheDir,
    json_out: bool = AsJson,
    quiet: bool = Quiet,
) -> None:
    """Find the smallest set of framework settings that turns RUN's first bad environment good."""
    from envbisect import report
    from envbisect.narrow import narrow_run
    from envbisect.session import Session

    with open_store(settings_for(cache_dir)) as store:
        stored = store.get_run(run_id).get("settings") or {}
    settings = settings_for(cache_dir, index_url, extra_index_url, find_links, python or stored.get("python"),
                            stored.get("installer") or "uv", allow_build, not no_reuse)
    with open_store(settings) as store, progress_for(json_out, quiet) as progress, \
            Session(settings, store, progress) as session:
        result = narrow_run(session, run_id, only=tuple(knob), bisector=not no_compiler_bisector,
                            argv=[redact(a) for a in sys.argv[1:]])
    if json_out:
        print_json(result)
    else:
        for i, line in enumerate(report.text_summary(result)):
            out.print(line, markup=False, style="bold" if i == 0 else None)
