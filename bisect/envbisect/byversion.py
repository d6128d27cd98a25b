"""``bisect run``: bisect one package's releases for the recipe's first bad version.

Lists the candidates (as of the run's snapshot, so a resumed run sees the same list),
narrows them to ``--good``/``--bad``, fails fast on what would waste every probe (a
``--with`` pin that cannot be resolved, a ``--package`` the recipe does not use), then
drives :class:`envbisect.search.Bisection` through the run driver and returns the result
as a plain dict for ``report``, with the honest details: releases excluded between the
boundary, untestable candidates grouped by reason, and a hint when the older candidates
were untestable rather than bad.
"""

from __future__ import annotations

import re
import shlex
import time

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbisect import __version__
from envbisect import nightly, reference, upstream
from envbisect.config import host_info
from envbisect.driver import ActiveRun, SearchOutcome, latest_cutoff, open_run, reason_family, snapshot_for
from envbisect.errors import ConfigError, NoCandidates
from envbisect.plan import Cutoff, Unresolvable, as_of, iso, keep_visible
from envbisect.prefetch import search_ahead
from envbisect.reproduce import index_args, uv_run
from envbisect.requests_model import (BisectRequest, DepsMode, as_version, exact_pins, parse_with,
                                      requirements_for, signature)
from envbisect.search import Bisection, Status, Verdict
from envbisect.session import Pending, Probe, Session
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

#: Untestable reasons that point at a binary/ABI mismatch between an old release and
#: today's dependencies: ``--deps as-of-release`` tests it against those of its day.
_ABI = re.compile(r"numpy\.dtype size changed|\bABI\b|undefined symbol|compiled using NumPy|_ARRAY_API|"
                  r"binary incompatib|ImportError|ModuleNotFoundError|cannot import name", re.IGNORECASE)


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


def check_package(req: BisectRequest) -> None:
    """``--package`` must be one of the recipe's dependencies (or replace one, as a
    nightly package replaces its release package): otherwise nothing would change."""
    names = {canonicalize_name(n) for n in req.recipe.dependency_names()}
    if req.replaces or canonicalize_name(req.package) in names:
        return
    deps = ", ".join(sorted(names)) or "none"
    raise ConfigError(f"--package {req.package} is not among the recipe's dependencies ({deps}); "
                      f"add it to the recipe's `dependencies` or bisect one of those")


def check_pins(session: Session, req: BisectRequest, pins, snapshot: str | None) -> None:
    """Resolve the ``--with`` pins with the recipe's other dependencies once: an impossible
    pin is one error line, not an untestable verdict on every candidate."""
    if not pins:
        return
    reqs = requirements_for(req.recipe, pins, req.package, None, drop=req.replaces)
    lock = session.lock(reqs, latest_cutoff(snapshot, reqs))
    if isinstance(lock, Unresolvable):
        raise ConfigError(f"--with {' '.join(req.with_)} cannot be installed with the recipe's other dependencies "
                          f"({lock.reason}); fix or drop the pin")


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
        **({"sampling": req.sampling.as_dict()} if req.sampling else {}),
        **reference.signature_part(req),
    })


def deps_cutoff(req: BisectRequest, cand: Candidate, pins) -> Cutoff | None:
    """The resolve cutoff for a candidate: None for the run's snapshot (``--deps latest``),
    or the candidate's upload time with the candidate and ``==`` pins exempt (as-of-release)."""
    if req.deps is not DepsMode.AS_OF_RELEASE:
        return None
    return Cutoff(as_of(cand.upload_time), keep_visible([req.package, *exact_pins(pins)]))


def run_snapshot(cands: list[Candidate], resumable: dict | None) -> str | None:
    """The run's snapshot: a resumed run's own, else a new one (:func:`snapshot_for`)."""
    if resumable is not None:
        return resumable.get("snapshot")
    return snapshot_for(cands)


def as_of_snapshot(cands: list[Candidate], snapshot: str) -> list[Candidate]:
    """The candidates a run with this snapshot sees: none uploaded after it."""
    return [c for c in cands if c.upload_time is None or iso(c.upload_time) <= snapshot]


def _check_upload_times(req: BisectRequest, window: list[Candidate]) -> None:
    missing = [str(c.version) for c in window if c.upload_time is None]
    if req.deps is DepsMode.AS_OF_RELEASE and missing:
        raise ConfigError(f"--deps as-of-release needs upload times, and the index gives none for {req.package} "
                          f"{', '.join(missing[:5])}; use an index that publishes them or --deps latest")


def run_bisection(session: Session, req: BisectRequest) -> dict:
    """Bisect ``req.package`` for ``req.recipe``; every probe is stored as it finishes."""
    started = time.monotonic()
    pins = parse_with(req.with_)
    reference.prepare(req)
    sig = run_signature(session, req)
    resumable = session.store.find_resumable_run(sig)
    cands, excluded, target = session.list_versions(req.package, req.spec, pre=req.pre)
    check_package(req)
    snapshot = run_snapshot(cands, resumable)
    if resumable and snapshot:  # a resumed run sees the candidates it saw before, not later uploads
        cands = as_of_snapshot(cands, snapshot)
    # Nightly builds: one per night of one variant, ordered by build date (nightly.py).
    cands, excluded, channel = nightly.arrange(cands, excluded, package=req.package, variant=req.variant,
                                               window=req.window, nightly_only=req.nightly)
    if channel is not None:
        session.handler.note(channel.describe(req.package))
    if not cands:
        raise NoCandidates(why_empty(excluded, target, req.spec, package=req.package) + _other_axis_hint(req))
    ref = _index_of("--diverge-from", req.diverge_from, cands, excluded, req.package) if req.diverge_from else None
    lo, hi = bounds(req, cands, excluded)
    _check_upload_times(req, cands[lo:hi + 1])
    check_pins(session, req, pins, snapshot)
    labels = [str(c.version) for c in cands]
    with open_run(session, kind="bisect", recipe=req.recipe, judging=req.judging, signature=sig,
                  settings=_settings_dict(session, req), argv=req.argv, package=req.package, spec=req.spec,
                  snapshot=snapshot) as run:
        def plan(i: int) -> tuple[list[str], Cutoff]:
            reqs = requirements_for(req.recipe, pins, req.package, labels[i], drop=req.replaces)
            return reqs, deps_cutoff(req, cands[i], pins) or run.latest(reqs)

        def start_at(i: int) -> Probe | Pending:
            reqs, cutoff = plan(i)
            return run.start(labels[i], reqs, package=req.package, cutoff=cutoff, files=cands[i].files)

        if ref is not None:  # the reference release first: its outputs judge every candidate
            ref_reqs, ref_cutoff = plan(ref)
            reference.establish(run, labels[ref], ref_reqs, package=req.package, cutoff=ref_cutoff,
                                files=cands[ref].files)
        outcome = search_ahead(session, run, Bisection(len(cands), find_fix=req.find_fix, lo=lo, hi=hi,
                                                       verify=req.verify, ends_first=session.settings.jobs <= 1),
                               labels, start_at, plan, dict(req.recipe.settings.resources))
        result = _result(session, req, run, outcome, cands[lo:hi + 1], cands, excluded, target)
        if channel is not None:
            result["nightly"] = channel.as_dict()
        result.update(upstream.source_ranges(result, session.store.probes_for_run(run.id), primary=req.package))
        result["duration_s"] = round(time.monotonic() - started, 3)
        return run.finish(reference.annotate(result, run.judging, outcome.learned))


def _settings_dict(session: Session, req: BisectRequest) -> dict:
    return {"with": list(req.with_), "pre": req.pre, "timeout": req.timeout, "regress": req.regress.value,
            "find_fix": req.find_fix, "retries": req.retries, "good": req.good, "bad": req.bad,
            "verify": req.verify, "thresholds": [str(t) for t in req.thresholds],
            "python": session.interpreter.version, "index": session.settings.index.redacted(),
            "installer": session.settings.installer, "allow_build": session.settings.allow_build,
            "deps": req.deps.value, **reference.signature_part(req)}


def _result(session: Session, req: BisectRequest, run: ActiveRun, outcome: SearchOutcome, window: list[Candidate],
            cands: list[Candidate], excluded: list[Excluded], target) -> dict:
    def ver(i: int | None) -> str | None:
        return None if i is None else str(cands[i].version)

    res, learned = outcome.result, outcome.learned
    old_key, new_key = ("last_bad", "first_good") if req.find_fix else ("last_good", "first_bad")
    probes = [dict(probe_summary(p), upload_time=_iso(cands[i].upload_time))
              for i, p in ((i, learned[i]) for i in res.probed if i in learned)]
    result = {
        "run_id": run.id, "kind": "bisect", "status": res.status.value, "package": req.package,
        "range": req.spec, "find_fix": req.find_fix, old_key: ver(res.last_old), new_key: ver(res.first_new),
        "untestable_between": [ver(i) for i in res.untestable_between],
        **untestable_summary(learned.values()),
        "flaky": [p.label for p in learned.values() if p.flaky], "probes": probes,
        "executed": sum(p.executed for p in learned.values()), "candidates": len(window), "rounds": outcome.rounds,
        "excluded": [{"version": e.version, "reason": e.reason.value, "detail": e.detail} for e in excluded],
        "excluded_between": excluded_between(excluded, ver(res.last_old), ver(res.first_new)),
        "deps": req.deps.value, "snapshot": run.snapshot, "recipe": req.recipe.shown,
        "recipe_hash": req.recipe.hash, "with": list(req.with_), "target": target.describe(),
        "envbisect": __version__, "host": host_info(session.interpreter.version),
        "index": session.settings.index.redacted(),
    }
    if outcome.stopped:
        result["stopped"] = {"reason": outcome.stopped, "fix": outcome.fix}
    edge = getattr(res, "untestable_edge", None)
    if edge:
        result["untestable_edge"] = edge
        result["hint"] = edge_hint(req, edge, result)
    new = ver(res.first_new)
    cutoff = None
    if new is not None:  # the resolve cutoff of the first bad probe, as the run used it
        pins = parse_with(req.with_)
        cutoff = deps_cutoff(req, cands[res.first_new], pins) or run.latest(
            requirements_for(req.recipe, pins, req.package, new, drop=req.replaces))
    result["reproduce"] = reproduce_lines(req, result.get(old_key), result.get(new_key), cutoff, result["index"])
    return run.sampler.annotate(result, run) if run.sampler is not None else result


def probe_summary(p: Probe) -> dict:
    """One probe as a result lists it."""
    return {"version": p.label, "outcome": p.judgement.outcome.value, "verdict": p.judgement.verdict.value,
            "reason": p.judgement.reason, "reused": p.reused, "flaky": p.flaky, "metrics": p.metrics,
            "resolved": p.resolved, "host": p.where, **(p.judgement.details or {})}


def untestable_summary(probes) -> dict:
    """``untestable`` (each candidate and its reason) and ``untestable_groups`` (candidates
    sharing one reason, collapsed: summaries and reports print each reason once)."""
    untestable = [{"version": p.label, "reason": p.judgement.reason}
                  for p in probes if p.judgement.verdict is Verdict.UNTESTABLE]
    groups: dict[str, list[str]] = {}
    for u in untestable:
        groups.setdefault(reason_family(u["reason"], u["version"]), []).append(u["version"])
    firsts = {reason_family(u["reason"], u["version"]): u["reason"] for u in reversed(untestable)}
    return {"untestable": untestable,
            "untestable_groups": [{"reason": firsts[k], "versions": v} for k, v in groups.items()]}


def excluded_between(excluded: list[Excluded], old: str | None, new: str | None) -> list[dict]:
    """Releases left out of the candidates (yanked, no wheel, ...) that lie strictly
    between the boundary versions: the change may be in one of them, untested."""
    if not old or not new:
        return []
    lo, hi = sorted((Version(old), Version(new)))
    out = []
    for e in excluded:
        try:
            v = Version(e.version)
        except InvalidVersion:
            continue
        if lo < v < hi:
            out.append({"version": e.version, "reason": e.reason.value})
    return sorted(out, key=lambda d: Version(d["version"]))


def edge_hint(req: BisectRequest, edge: str, result: dict) -> str:
    """Why the answer is inconclusive at one end, and what to try."""
    groups = result.get("untestable_groups") or []
    reason = groups[0]["reason"] if groups else "untestable"
    if edge == "old":
        first = result.get("first_good" if req.find_fix else "first_bad")
        text = f"the releases older than {first} could not be tested ({reason})"
        if req.deps is DepsMode.LATEST and _ABI.search(reason):
            text += "; they may not work with today's dependencies: pass --deps as-of-release to test each " \
                    "against the dependencies of its day"
        return text
    last = result.get("last_bad" if req.find_fix else "last_good")
    return f"the releases newer than {last} could not be tested ({reason})"


def _iso(dt) -> str | None:
    return dt.isoformat() if dt else None


def reproduce_lines(req: BisectRequest, old: str | None, new: str | None, cutoff: Cutoff | None = None,
                    index: dict | None = None) -> list[str]:
    """Commands that reproduce the finding: the bisection itself, and the newer end's
    environment alone (``uv run``, resolved from the run's index under its cutoff)."""
    recipe = shlex.quote(req.recipe.shown)
    args = ["bisect", "run", recipe, "--package", req.package, *map(shlex.quote, index_args(index))]
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
    args += reference.reproduce_args(req)
    lines = [" ".join(args)]
    if new:
        lines.append(uv_run(req.recipe.shown, [f"{req.package}=={new}", *req.with_], cutoff, index))
    return lines
