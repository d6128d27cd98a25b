"""``bisect run``: bisect one package's releases for the recipe's first bad version.

Lists the candidates, narrows them to ``--good``/``--bad``, finds or creates the run
(an unfinished run with the same signature is resumed), drives the pure search with
probes from the session, and returns the result as a plain dict for ``report``.
"""

from __future__ import annotations

import shlex
import time

from packaging.utils import canonicalize_name

from envbisect import __version__
from envbisect import nightly
from envbisect.config import host_info
from envbisect.errors import ConfigError, NoCandidates
from envbisect.search import Bisection, SearchResult, Status, Verdict
from envbisect.bydate import as_of, keep_visible
from envbisect.session import (BisectRequest, DepsMode, Probe, Session, as_version, parse_with, requirements_for,
                               signature)
from envbisect.versions import Candidate, Excluded, why_empty

#: Exit status of ``bisect run`` per search status (documented in the README).
EXIT_FOUND = 0
EXIT_NOT_REPRODUCED = 3
EXIT_INCONCLUSIVE = 4
EXIT_PREDATES_RANGE = 5
EXIT_CODES = {
    Status.FOUND.value: EXIT_FOUND,
    Status.NOT_REPRODUCED.value: EXIT_NOT_REPRODUCED,
    Status.INCONCLUSIVE.value: EXIT_INCONCLUSIVE,
    Status.PREDATES_RANGE.value: EXIT_PREDATES_RANGE,
}


def _index_of(flag: str, text: str, cands: list[Candidate], excluded: list[Excluded], package: str) -> int:
    wanted = as_version(text, flag)
    for i, cand in enumerate(cands):
        if cand.version == wanted:
            return i
    for ex in excluded:
        if ex.version == str(wanted) or ex.version == text:
            raise ConfigError(f"{flag} {text} cannot be tested here: {ex.reason.value}; pick another version "
                              f"(see `bisect versions {package}`)")
    raise ConfigError(f"{flag} {text} is not a release of {package} in the searched range; "
                      f"list the candidates with `bisect versions {package}`")


def bounds(req: BisectRequest, cands: list[Candidate], excluded: list[Excluded]) -> tuple[int, int]:
    """Candidate index range [lo, hi] from ``--good``/``--bad`` (swapped with ``--find-fix``)."""
    old_flag, new_flag = ("--bad", "--good") if req.find_fix else ("--good", "--bad")
    old_v, new_v = (req.bad, req.good) if req.find_fix else (req.good, req.bad)
    lo = _index_of(old_flag, old_v, cands, excluded, req.package) if old_v else 0
    hi = _index_of(new_flag, new_v, cands, excluded, req.package) if new_v else len(cands) - 1
    if old_v and new_v and lo >= hi:
        hint = "" if req.find_fix else " or pass --find-fix to look for a fix"
        raise ConfigError(f"{new_flag} {new_v} must be newer than {old_flag} {old_v}; swap them{hint}")
    if not req.verify and not (old_v and new_v):
        raise ConfigError("--no-verify needs both --good and --bad: it trusts them instead of probing the ends")
    return lo, hi


def _other_axis_hint(req: BisectRequest) -> str:
    """When the bisected package cannot be installed here (tensorflow-metal on Linux), name
    the recipe's other packages that could be bisected instead; never switch silently."""
    others = [d.name for d in req.recipe.dependencies
              if canonicalize_name(d.name) != canonicalize_name(req.package)
              and (d.marker is None or d.marker.evaluate())]
    if not others:
        return ""
    return f"; to bisect on this machine instead, pass --package {others[0]} (the recipe also depends on {', '.join(others)})"


def run_signature(session: Session, req: BisectRequest) -> str:
    return signature({
        "recipe": req.recipe.hash, "package": req.package, "spec": req.spec, "good": req.good,
        "bad": req.bad, "verify": req.verify, "with": sorted(req.with_), "pre": req.pre,
        "timeout": req.timeout, "regress": req.regress.value, "find_fix": req.find_fix,
        "thresholds": [str(t) for t in req.thresholds], "retries": req.retries,
        "python": session.interpreter.version, "index": session.settings.index.redacted(),
        "installer": session.settings.installer, "allow_build": session.settings.allow_build,
        # Nightly searches only (so the signatures of release searches stay as they were).
        **({"nightly": [req.variant, str(req.window), sorted(req.replaces)]} if req.nightly or req.variant else {}),
        **({"deps": req.deps.value} if req.deps is not DepsMode.LATEST else {}),
    })


def deps_cutoff(req: BisectRequest, cand: Candidate, pins) -> dict:
    """``session.probe`` keywords for ``--deps``: nothing for latest; for as-of-release, the
    candidate's upload time as the cutoff, with the candidate and ``==`` pins exempt."""
    if req.deps is not DepsMode.AS_OF_RELEASE:
        return {}
    exempt = [req.package, *(p.name for p in pins if any(s.operator in ("==", "===") for s in p.specifier))]
    return {"exclude_newer": as_of(cand.upload_time), "exclude_newer_package": keep_visible(exempt)}


def _check_upload_times(req: BisectRequest, window: list[Candidate]) -> None:
    missing = [str(c.version) for c in window if c.upload_time is None]
    if req.deps is DepsMode.AS_OF_RELEASE and missing:
        raise ConfigError(f"--deps as-of-release needs upload times, and the index gives none for {req.package} "
                          f"{', '.join(missing[:5])}; use an index that publishes them or --deps latest")


def run_bisection(session: Session, req: BisectRequest) -> dict:
    """Bisect ``req.package`` for ``req.recipe``; every probe is stored as it finishes."""
    started = time.monotonic()
    pins = parse_with(req.with_)
    cands, excluded, target = session.list_versions(req.package, req.spec, pre=req.pre)
    # Nightly builds: one per night of one variant, ordered by build date (nightly.py).
    cands, excluded, channel = nightly.arrange(cands, excluded, package=req.package, variant=req.variant,
                                               window=req.window, nightly_only=req.nightly)
    if channel is not None:
        session.handler.note(channel.describe(req.package))
    if not cands:
        raise NoCandidates(why_empty(excluded, target, req.spec, package=req.package) + _other_axis_hint(req))
    lo, hi = bounds(req, cands, excluded)
    _check_upload_times(req, cands[lo:hi + 1])
    store = session.store
    sig = run_signature(session, req)
    run_id = session.open_run(kind="bisect", recipe=req.recipe, package=req.package, spec=req.spec,
                              signature=sig, settings=_settings_dict(session, req), argv=req.argv)
    search = Bisection(len(cands), find_fix=req.find_fix, lo=lo, hi=hi, verify=req.verify)
    learned: dict[int, Probe] = {}
    try:
        while (i := search.next_probe()) is not None:
            label = str(cands[i].version)
            session.handler.probe_started(nightly.display(label), len(learned) + 1,
                                          len(learned) + 1 + search.remaining_estimate)
            probe = session.probe(run_id, req.recipe, label,
                                  requirements_for(req.recipe, pins, req.package, label, drop=req.replaces),
                                  package=req.package, timeout=req.timeout, regress=req.regress,
                                  thresholds=req.thresholds, retries=req.retries, reuse=session.settings.reuse,
                                  files=cands[i].files, **deps_cutoff(req, cands[i], pins))
            learned[i] = probe
            search.record(i, probe.judgement.verdict)
    except BaseException:
        store.update_run(run_id, status="interrupted")
        raise
    result = _result(session, req, run_id, search.result(), cands[lo:hi + 1], cands, excluded, learned, target)
    if channel is not None:
        result["nightly"] = channel.as_dict()
    result["duration_s"] = round(time.monotonic() - started, 3)
    store.update_run(run_id, status="done", result=result)
    return result


def _settings_dict(session: Session, req: BisectRequest) -> dict:
    return {"with": list(req.with_), "pre": req.pre, "timeout": req.timeout, "regress": req.regress.value,
            "find_fix": req.find_fix, "retries": req.retries, "good": req.good, "bad": req.bad,
            "verify": req.verify, "thresholds": [str(t) for t in req.thresholds],
            "python": session.interpreter.version, "index": session.settings.index.redacted(),
            "installer": session.settings.installer, "allow_build": session.settings.allow_build,
            "deps": req.deps.value}


def _result(session: Session, req: BisectRequest, run_id: int, res: SearchResult, window: list[Candidate],
            cands: list[Candidate], excluded: list[Excluded], learned: dict[int, Probe], target) -> dict:
    def ver(i: int | None) -> str | None:
        return None if i is None else str(cands[i].version)

    old_key, new_key = ("last_bad", "first_good") if req.find_fix else ("last_good", "first_bad")
    probes = [{
        "version": p.label, "outcome": p.judgement.outcome.value, "verdict": p.judgement.verdict.value,
        "reason": p.judgement.reason, "reused": p.reused, "flaky": p.flaky, "metrics": p.metrics,
        "resolved": p.resolved, "upload_time": _iso(cands[i].upload_time),
    } for i, p in ((i, learned[i]) for i in res.probed if i in learned)]
    untestable = [{"version": p.label, "reason": p.judgement.reason}
                  for p in learned.values() if p.judgement.verdict is Verdict.UNTESTABLE]
    result = {
        "run_id": run_id, "kind": "bisect", "status": res.status.value, "package": req.package,
        "range": req.spec, "find_fix": req.find_fix, old_key: ver(res.last_old), new_key: ver(res.first_new),
        "untestable": untestable, "untestable_between": [ver(i) for i in res.untestable_between],
        "flaky": [p.label for p in learned.values() if p.flaky], "probes": probes,
        "executed": sum(p.executed for p in learned.values()), "candidates": len(window),
        "excluded": [{"version": e.version, "reason": e.reason.value, "detail": e.detail} for e in excluded],
        "deps": req.deps.value, "recipe": req.recipe.shown, "recipe_hash": req.recipe.hash, "with": list(req.with_),
        "target": target.describe(), "envbisect": __version__,
        "host": host_info(session.interpreter.version), "index": session.settings.index.redacted(),
    }
    result["reproduce"] = reproduce_lines(req, result.get(old_key), result.get(new_key))
    return result


def _iso(dt) -> str | None:
    return dt.isoformat() if dt else None


def reproduce_lines(req: BisectRequest, old: str | None, new: str | None) -> list[str]:
    """Commands that reproduce the finding: the bisection itself, and the failing env alone."""
    recipe = shlex.quote(req.recipe.shown)
    args = ["bisect", "run", recipe, "--package", req.package]
    if req.find_fix:
        args.append("--find-fix")
    good, bad = (new, old) if req.find_fix else (old, new)
    if good:
        args += ["--good", good]
    if bad:
        args += ["--bad", bad]
    for w in req.with_:
        args += ["--with", shlex.quote(w)]
    if req.deps is not DepsMode.LATEST:
        args += ["--deps", req.deps.value]
    lines = [" ".join(args)]
    target_version = new if new else None
    if target_version:
        extra = " ".join(f"--with {shlex.quote(w)}" for w in req.with_)
        lines.append(f"uv run --with {shlex.quote(f'{req.package}=={target_version}')} {extra} {recipe}".replace("  ", " "))
    return lines
