"""``bisect matrix``: run the recipe over the grid of several packages' candidates.

Plugins support only some releases of what they plug into (a tensorflow-metal release
works with a few TensorFlow releases), so the question is often "which *pairs* are
bad?". Each axis (``--axis PKG[=SPEC]``) contributes its candidates for this host; every
combination is a cell. A cell is first *resolved* (``uv pip compile`` against the env's
interpreter and indexes; no download, no install): a combination the resolver rejects is
recorded as incompatible with the resolver's reason and costs no recipe run. The others
are probed like any bisection candidate (same env cache, same probe reuse).

Everything is one run of kind ``matrix`` with one probe row per cell, so ``bisect show``
and ``bisect report`` work on it and an interrupted matrix resumes: cells already
recorded in the run are read back, not tried again.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from envbisect import __version__
from envbisect.config import host_info
from envbisect.envs import EnvSpec, install_reason, installer_environ, uv_bin
from envbisect.errors import ConfigError, NoCandidates
from envbisect.policy import RegressMode, Threshold
from envbisect.recipes import Recipe
from envbisect.session import Session, parse_with, requirements_for, signature
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


@dataclass(frozen=True)
class Resolution:
    """A resolver's answer for one set of requirements, without installing anything."""

    ok: bool
    pins: dict[str, str]
    reason: str


def resolve(spec: EnvSpec, uv_cache: Path) -> Resolution:
    """Resolve ``spec``'s requirements for its interpreter with ``uv pip compile``.

    Only metadata is fetched, so an incompatible combination costs a resolve, not an
    install. With the pip installer nothing is pre-resolved (the install decides).
    """
    if spec.installer != "uv":
        return Resolution(True, {}, "")
    cmd = [uv_bin(), "pip", "compile", "-", "--python", spec.interpreter.path, "--quiet", "--no-header",
           "--no-annotate", *spec.index.uv_args()]
    if not spec.allow_build:
        cmd.append("--no-build")
    if spec.exclude_newer:
        cmd += ["--exclude-newer", spec.exclude_newer]
    for item in spec.exclude_newer_package:
        cmd += ["--exclude-newer-package", item]
    proc = subprocess.run(cmd, input="\n".join(spec.requirements) + "\n", capture_output=True, text=True,
                          env=installer_environ(uv_cache), check=False)
    if proc.returncode != 0:
        return Resolution(False, {}, install_reason(proc.stderr or proc.stdout))
    pins = {}
    for line in proc.stdout.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version.strip()
    return Resolution(True, pins, "")


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
    })


def _axis_versions(session: Session, req: MatrixRequest) -> list[list[str]]:
    """Each axis's candidates for this host, oldest first (the newest ``limit`` of them)."""
    out = []
    for axis in req.axes:
        cands, excluded, target = session.list_versions(axis.package, axis.spec, pre=req.pre)
        if not cands:
            raise NoCandidates(why_empty(excluded, target, axis.spec, package=axis.package))
        versions = [str(c.version) for c in cands]
        out.append(versions[-req.limit:] if req.limit else versions)
    return out


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
    axis_versions = _axis_versions(session, req)
    store, sig = session.store, matrix_signature(session, req)
    settings = {"axes": [str(a) for a in req.axes], "with": list(req.with_), "limit": req.limit,
                "pre": req.pre, "timeout": req.timeout, "regress": req.regress.value}
    run_id = session.open_run(kind="matrix", recipe=req.recipe, package=",".join(a.package for a in req.axes),
                              spec=None, signature=sig, settings=settings, argv=req.argv)
    grid = list(itertools.product(*axis_versions))
    # Cells this run already recorded (it is being resumed) are read back, not retried.
    recorded: dict[str, dict] = {}
    for row in store.probes_for_run(run_id):
        recorded.setdefault(row["version"], row)
    cells, executed, resolves = [], 0, 0
    try:
        for step, combo in enumerate(grid, start=1):
            versions = dict(zip((a.package for a in req.axes), combo))
            label = cell_label(versions)
            session.handler.probe_started(label, step, len(grid))
            if label in recorded:
                cells.append(_cell_from_row(versions, label, recorded[label]))
                continue
            cell, ran, resolved_now = _probe_cell(session, req, run_id, versions, label, pins)
            cells.append(cell)
            executed, resolves = executed + ran, resolves + resolved_now
    except BaseException:
        store.update_run(run_id, status="interrupted")
        raise
    result = {
        "run_id": run_id, "kind": "matrix", "status": "done",
        "axes": [{"package": a.package, "spec": a.spec, "versions": v} for a, v in zip(req.axes, axis_versions)],
        "cells": cells, "bad": [c["label"] for c in cells if c["outcome"] == CellOutcome.BAD.value],
        "incompatible": sum(c["outcome"] == CellOutcome.INCOMPATIBLE.value for c in cells),
        "executed": executed, "resolves": resolves, "recipe": req.recipe.shown, "recipe_hash": req.recipe.hash,
        "with": list(req.with_), "target": session.target().describe(), "envbisect": __version__,
        "host": host_info(session.interpreter.version), "index": session.settings.index.redacted(),
        "duration_s": round(time.monotonic() - started, 3),
        "reproduce": [" ".join(["bisect", "matrix", shlex.quote(req.recipe.shown),
                                *(f"--axis {shlex.quote(str(a))}" for a in req.axes),
                                *(f"--with {shlex.quote(w)}" for w in req.with_)]
                               + ([f"--limit {req.limit}"] if req.limit else []))],
    }
    store.update_run(run_id, status="done", result=result)
    return result


def _probe_cell(session: Session, req: MatrixRequest, run_id: int, versions: dict[str, str], label: str,
                pins: list[Requirement]) -> tuple[dict, int, int]:
    """One cell: resolve (unless its env exists), then probe. Returns (cell, executed, resolves)."""
    axis_pins = [Requirement(f"{pkg}=={ver}") for pkg, ver in versions.items()]
    reqs = requirements_for(req.recipe, [*pins, *axis_pins])
    spec = session.env_spec(reqs)
    if session.envs.lookup(spec) is None:
        resolution = resolve(spec, session.settings.cache.uv_cache)
        if not resolution.ok:
            reason = f"incompatible: {resolution.reason}"
            seq = len(session.store.probes_for_run(run_id))  # numbered as Session.probe numbers
            session.store.add_probe(run_id, seq=seq, attempt=0, recipe_hash=req.recipe.hash, env_key=spec.key,
                                    host=session.host, package=None, version=label, requirements=reqs,
                                    outcome=CellOutcome.INCOMPATIBLE.value, verdict="untestable", reason=reason)
            return _cell(versions, label, CellOutcome.INCOMPATIBLE.value, "untestable", reason), 0, 1
        resolved_now = 1
    else:
        resolved_now = 0
    probe = session.probe(run_id, req.recipe, label, reqs, package=None, timeout=req.timeout,
                          regress=req.regress, thresholds=req.thresholds, retries=req.retries,
                          reuse=session.settings.reuse)
    j = probe.judgement
    cell = _cell(versions, label, j.outcome.value, j.verdict.value, j.reason, probe.metrics, probe.resolved,
                 reused=probe.reused, flaky=probe.flaky)
    return cell, probe.executed, resolved_now


def _cell(versions: dict[str, str], label: str, outcome: str, verdict: str, reason: str,
          metrics: dict | None = None, resolved: dict | None = None, *, reused: bool = False,
          flaky: bool = False) -> dict:
    metric = main_metric(metrics)
    return {"versions": versions, "label": label, "outcome": outcome, "verdict": verdict, "reason": reason,
            "metrics": metrics, "metric": list(metric) if metric else None, "resolved": resolved or {},
            "reused": reused, "flaky": flaky}


def _cell_from_row(versions: dict[str, str], label: str, row: dict) -> dict:
    """A cell already recorded in this run (a resumed matrix)."""
    return _cell(versions, label, row.get("outcome") or "", row.get("verdict") or "", row.get("reason") or "",
                 row.get("metrics"), row.get("resolved"), reused=True, flaky=bool(row.get("flaky")))
