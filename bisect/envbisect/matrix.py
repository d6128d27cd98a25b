"""``bisect matrix``: run the recipe over the grid of several packages' candidates.

Plugins support only some releases of what they plug into (a tensorflow-metal release
works with a few TensorFlow releases), so the question is often "which *pairs* are
bad?". Each axis (``--axis PKG[=SPEC]``) contributes its candidates for this host; every
combination is a cell. A cell is first *resolved* (``uv pip compile`` against the env's
interpreter and indexes; no download, no install): a combination the resolver rejects is
recorded as incompatible with the resolver's reason and costs no recipe run. The others
are probed like any bisection candidate (same env cache, same probe reuse).

Cells are judged as ``bisect run`` judges (:class:`envbisect.requests_model.Numerics`):
with a reference (``--diverge-from`` / ``reference``) the reference environment is probed
first (:func:`_establish`) and every cell that exited 0 or 1 is good when its outputs match
it within ``--rtol``/``--atol``; a failure signature makes a bad cell without it untestable.

Everything is one run of kind ``matrix`` with one probe row per cell, so ``bisect show``
and ``bisect report`` work on it and an interrupted matrix resumes: cells already
recorded in the run are read back, not tried again.
"""

from __future__ import annotations

import itertools
import re
import shlex
import time
from dataclasses import dataclass, field
from enum import Enum

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from envbisect import __version__, reference
from envbisect.config import host_info
from envbisect.driver import ActiveRun, open_run, snapshot_for
from envbisect.errors import ConfigError, NoCandidates
from envbisect.plan import Unresolvable
from envbisect.policy import RegressMode, Threshold
from envbisect.recipes import Recipe
from envbisect.requests_model import Judging, Numerics, parse_with, requirements_for, signature
from envbisect.session import Probe, Session
from envbisect.versions import parse_specifier, why_empty

_AXIS = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<rest>.*)$")


class CellOutcome(str, Enum):
    """What one cell came to: a policy outcome, or incompatible (never run)."""

    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    ERROR = "error"
    INCOMPATIBLE = "incompatible"


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: a package and an optional PEP 440 range."""

    package: str
    spec: str | None = None

    @classmethod
    def parse(cls, text: str) -> Axis:
        """``PKG``, ``PKG=SPEC`` or ``PKG<op>...`` (``core=>=2,<3``, ``core>=2``)."""
        match = _AXIS.match(text)
        if not match:
            raise ConfigError(f"--axis {text!r} is not PKG[=SPEC]; use e.g. --axis tensorflow='>=2.15,<2.19'")
        rest = match["rest"].strip()
        if rest.startswith("=") and not rest.startswith("=="):
            rest = rest[1:].strip()
        spec = rest or None
        parse_specifier(spec)  # ConfigError with the fix when the range is malformed
        return cls(match["name"], spec)

    def __str__(self) -> str:
        return f"{self.package}{'=' + self.spec if self.spec else ''}"


@dataclass
class MatrixRequest:
    recipe: Recipe
    axes: tuple[Axis, ...]
    with_: tuple[str, ...] = ()
    pre: bool = False
    limit: int | None = None
    timeout: float = 600.0
    regress: RegressMode = RegressMode.EXIT
    thresholds: tuple[Threshold, ...] = ()
    retries: int = 0
    argv: list[str] = field(default_factory=list)
    #: Reference release, tolerances and failure signature (flags, else the recipe's table).
    numerics: Numerics = Numerics()


def cell_label(versions: dict[str, str]) -> str:
    """How a cell is named in probe rows and tables: ``core==2.1, plugin==0.9``."""
    return ", ".join(f"{pkg}=={ver}" for pkg, ver in versions.items())


def main_metric(metrics: dict | None) -> tuple[str, float] | None:
    """The recipe's main metric: the first numeric value it reported."""
    for key, value in (metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, value
    return None


def matrix_signature(session: Session, req: MatrixRequest) -> str:
    return signature({
        "matrix": req.recipe.hash, "axes": [str(a) for a in req.axes], "with": sorted(req.with_),
        "pre": req.pre, "limit": req.limit, "timeout": req.timeout, "regress": req.regress.value,
        "thresholds": [str(t) for t in req.thresholds], "retries": req.retries,
        "python": session.interpreter.version, "index": session.settings.index.redacted(),
        "installer": session.settings.installer, "allow_build": session.settings.allow_build,
        **reference.signature_part(req.numerics),
    })


def _axis_versions(session: Session, req: MatrixRequest) -> tuple[list[list[str]], list]:
    """Each axis's candidates for this host, oldest first (the newest ``limit`` of them),
    as versions per axis and as candidates all together (for the run's snapshot)."""
    out, every = [], []
    for axis in req.axes:
        cands, excluded, target = session.list_versions(axis.package, axis.spec, pre=req.pre)
        if not cands:
            raise NoCandidates(why_empty(excluded, target, axis.spec, package=axis.package))
        cands = cands[-req.limit:] if req.limit else cands
        out.append([str(c.version) for c in cands])
        every += cands
    return out, every


def run_matrix(session: Session, req: MatrixRequest) -> dict:
    """Probe every cell of the grid (incompatible ones by resolve only); store and return it."""
    started = time.monotonic()
    if not req.axes:
        raise ConfigError("bisect matrix needs at least one --axis PKG[=SPEC]; e.g. --axis tensorflow --axis tensorflow-metal")
    names = [canonicalize_name(a.package) for a in req.axes]
    if len(set(names)) != len(names):
        raise ConfigError("each --axis package may appear once; merge the ranges into one --axis PKG=SPEC")
    pins = parse_with(req.with_)
    if any(canonicalize_name(p.name) in names for p in pins):
        raise ConfigError("a package cannot be both an --axis and a --with pin; drop one of them")
    axis_versions, every = _axis_versions(session, req)
    settings = {"axes": [str(a) for a in req.axes], "with": list(req.with_), "limit": req.limit,
                "pre": req.pre, "timeout": req.timeout, "regress": req.regress.value,
                **reference.signature_part(req.numerics)}
    judging = req.numerics.judging(Judging(req.timeout, req.regress, req.thresholds, req.retries))
    grid = list(itertools.product(*axis_versions))
    cells, executed, resolves = [], 0, session.planner.resolves
    with open_run(session, kind="matrix", recipe=req.recipe, judging=judging, signature=matrix_signature(session, req),
                  settings=settings, argv=req.argv, package=",".join(a.package for a in req.axes),
                  snapshot=snapshot_for(every)) as run:
        if req.numerics.diverge_from:  # the reference first: its outputs judge every cell
            _establish(run, req, pins)
        learned = {}
        for step, combo in enumerate(grid, start=1):
            versions = dict(zip((a.package for a in req.axes), combo))
            label = cell_label(versions)
            session.handler.probe_started(label, step, len(grid))
            cell, ran, learned[step] = _probe_cell(session, run, req, versions, label, pins)
            cells.append(cell)
            executed += ran
        result = {
            "run_id": run.id, "kind": "matrix", "status": "done",
            "axes": [{"package": a.package, "spec": a.spec, "versions": v} for a, v in zip(req.axes, axis_versions)],
            "cells": cells, "bad": [c["label"] for c in cells if c["outcome"] == CellOutcome.BAD.value],
            "incompatible": sum(c["outcome"] == CellOutcome.INCOMPATIBLE.value for c in cells),
            "executed": executed, "resolves": session.planner.resolves - resolves, "snapshot": run.snapshot,
            "recipe": req.recipe.shown, "recipe_hash": req.recipe.hash,
            "with": list(req.with_), "target": session.target().describe(), "envbisect": __version__,
            "host": host_info(session.interpreter.version), "index": session.settings.index.redacted(),
            "duration_s": round(time.monotonic() - started, 3),
            "reproduce": [" ".join(["bisect", "matrix", shlex.quote(req.recipe.shown),
                                    *(f"--axis {shlex.quote(str(a))}" for a in req.axes),
                                    *(f"--with {shlex.quote(w)}" for w in req.with_)]
                                   + ([f"--limit {req.limit}"] if req.limit else []))],
        }
        return run.finish(reference.annotate(result, run.judging, {k: p for k, p in learned.items() if p}))


def _establish(run: ActiveRun, req: MatrixRequest, pins: list[Requirement]) -> None:
    """Probe the reference: the recipe's ``package`` (else the first axis's) at the reference
    release, with the recipe's other dependencies and the ``--with`` pins as of the run's
    snapshot: the environment ``bisect run --diverge-from`` takes as its reference."""
    package = req.recipe.settings.package or req.axes[0].package
    reqs = requirements_for(req.recipe, pins, package, req.numerics.diverge_from)
    reference.establish(run, req.numerics.diverge_from, reqs, package=package, cutoff=run.latest(reqs))


def _probe_cell(session: Session, run: ActiveRun, req: MatrixRequest, versions: dict[str, str], label: str,
                pins: list[Requirement]) -> tuple[dict, int, Probe | None]:
    """One cell: resolved first (an incompatible one costs a resolve, no env, no run), then
    probed; a cell this run already recorded is read back. Returns (cell, executed, probe)."""
    rows = run.rows(label)
    if rows and rows[0].get("outcome") == CellOutcome.INCOMPATIBLE.value:
        return _cell(versions, label, CellOutcome.INCOMPATIBLE.value, "untestable", rows[0].get("reason") or ""), 0, None
    axis_pins = [Requirement(f"{pkg}=={ver}") for pkg, ver in versions.items()]
    reqs = requirements_for(req.recipe, [*pins, *axis_pins])
    lock = None
    if not rows:
        lock = session.lock(reqs, run.latest(reqs))
        if isinstance(lock, Unresolvable):
            reason = f"incompatible: {lock.reason}"
            session.record_incompatible(run.id, req.recipe, label, reqs, reason, outcome=CellOutcome.INCOMPATIBLE.value)
            return _cell(versions, label, CellOutcome.INCOMPATIBLE.value, "untestable", reason), 0, None
    probe = run.probe(label, reqs, package=None, lock=lock)
    j = probe.judgement
    cell = _cell(versions, label, j.outcome.value, j.verdict.value, j.reason, probe.metrics, probe.resolved,
                 reused=probe.reused, flaky=probe.flaky)
    if j.details and "diverged" in j.details:
        cell["diverged"] = list(j.details["diverged"])
    return cell, probe.executed, probe


def _cell(versions: dict[str, str], label: str, outcome: str, verdict: str, reason: str,
          metrics: dict | None = None, resolved: dict | None = None, *, reused: bool = False,
          flaky: bool = False) -> dict:
    metric = main_metric(metrics)
    return {"versions": versions, "label": label, "outcome": outcome, "verdict": verdict, "reason": reason,
            "metrics": metrics, "metric": list(metric) if metric else None, "resolved": resolved or {},
            "reused": reused, "flaky": flaky}
