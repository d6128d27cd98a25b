"""The ``bisect matrix`` command: the recipe over the grid of several packages' releases.

Kept apart from :mod:`envbisect.cli` (which registers it, like ``watch``) so
the matrix options live together. Like every command it parses options, builds
:class:`Settings`, calls one core function (:func:`envbisect.matrix.run_matrix`) and
renders; errors a user can act on are raised for ``cli.main`` to print on one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from envbisect.cli_options import (AllowBuild, AsJson, Atol, CacheDir, DivergeFrom, ExtraIndex, FailureSignature,
                                   FindLinks, IndexUrl, Installer, NoReuse, Python, Quiet, Regress, Retries, Rtol,
                                   Thresholds, Timeout, print_json, judging_for, open_store, out, progress_for,
                                   settings_for)
from envbisect.redact import redact


def matrix(
    recipe: Path = typer.Argument(..., help="Recipe script (PEP 723)."),
    axis: List[str] = typer.Option([], "--axis", help="PKG[=SPEC]: one dimension of the grid (repeatable)."),
    with_: List[str] = typer.Option([], "--with", help="Pin another package in every cell, e.g. numpy==1.26.4."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the newest N candidates of each axis."),
    pre: bool = typer.Option(False, "--pre", help="Include pre-releases and dev releases."),
    python: Optional[str] = Python,
    timeout: Optional[float] = Timeout,
    regress: str = Regress,
    threshold: List[str] = Thresholds,
    retries: int = Retries,
    no_reuse: bool = NoReuse,
    allow_build: bool = AllowBuild,
    installer: str = Installer,
    index_url: Optional[str] = IndexUrl,
    extra_index_url: List[str] = ExtraIndex,
    find_links: List[str] = FindLinks,
    cache_dir: Optional[Path] = CacheDir,
    json_out: bool = AsJson,
    quiet: bool = Quiet,
    diverge_from: Optional[str] = DivergeFrom, rtol: Optional[float] = Rtol, atol: Optional[float] = Atol,
    signature: Optional[str] = FailureSignature,
) -> None:
    """Run RECIPE over every combination of the --axis packages' releases.

    Combinations the resolver rejects are marked incompatible without running the recipe.
    With --diverge-from VERSION (or the recipe's reference) every cell is judged by its
    outputs against the recipe's package at VERSION.
    """
    from envbisect import report
    from envbisect.matrix import Axis, MatrixRequest, run_matrix
    from envbisect.recipes import load_recipe
    from envbisect.requests_model import Numerics
    from envbisect.session import Session

    rec = load_recipe(recipe)
    settings = settings_for(cache_dir, index_url or rec.settings.index_url, extra_index_url, find_links,
                         python or rec.settings.python, installer, allow_build, not no_reuse)
    judging = judging_for(timeout, regress, threshold, retries, rec)
    req = MatrixRequest(
        recipe=rec, axes=tuple(Axis.parse(a) for a in axis), with_=tuple(with_) or rec.settings.with_,
        pre=pre or rec.settings.pre, limit=limit, timeout=judging.timeout, regress=judging.regress,
        thresholds=judging.thresholds, retries=retries, argv=[redact(a) for a in sys.argv[1:]],
        numerics=Numerics.of(rec, diverge_from, rtol, atol, signature))
    with open_store(settings) as store, progress_for(json_out, quiet) as progress:
        result = run_matrix(Session(settings, store, progress), req)
    if json_out:
        print_json(result)
    else:
        for i, line in enumerate(report.text_summary(result)):
            out.print(line, markup=False, style="bold" if i == 0 else None)
