"""``bisect run --by date``: find the first day on which the recipe's environment went bad.

When nothing the user pinned changed but a result did, the culprit is one of the
dependencies that moved underneath. The candidates here are *instants*: the UTC days on
which any of the recipe's dependencies (or the packages named with ``--axis``) published
a release in the window. The environment at day D is the recipe's dependencies resolved
as of the end of D (uv's ``--exclude-newer``), so a release day on which several packages
shipped (TensorFlow and tensorflow-metal often do) is one instant, and a release whose
wheels were uploaded over a few hours is seen whole. ``--since`` adds the state as of that
moment as the oldest candidate. The search is :class:`envbisect.search.Bisection` over the
instants; between the last good and first bad instants, :mod:`envbisect.culprits` names
the package(s) that broke it.

Also owns the small helpers ``--deps as-of-release`` shares (:func:`as_of`,
:func:`keep_visible`): resolving "as of" a moment while pinned packages stay visible.
"""

from __future__ import annotations

import shlex
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from packaging.utils import canonicalize_name

from envbisect import __version__, upstream
from envbisect.byversion import untestable_summary
from envbisect.config import host_info
from envbisect.culprits import Isolation, isolate
from envbisect.driver import open_run
from envbisect.errors import ConfigError, NoCandidates
from envbisect.index import IndexClient
from envbisect.matrix import Axis
from envbisect.plan import Cutoff, iso, keep_visible
from envbisect.policy import RegressMode, Threshold
from envbisect.prefetch import search_ahead
from envbisect.recipes import Recipe
from envbisect.reproduce import index_args, uv_run
from envbisect.requests_model import Judging, exact_pins, parse_with, requirements_for, signature
from envbisect.search import Bisection, Verdict
from envbisect.session import Probe, Session
from envbisect.versions import Target, select

def parse_when(text: str | None, flag: str, *, end_of_day: bool = False) -> datetime | None:
    """A ``--since``/``--until`` value: ``YYYY-MM-DD`` or an ISO 8601 time (UTC if naive).

    A bare date means its start, or with ``end_of_day`` the start of the next day, so
    ``--until 2024-08-01`` includes releases of 1 August.
    """
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        return moment + timedelta(days=1) if end_of_day else moment
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a date; use YYYY-MM-DD or an ISO time such as 2024-08-01T12:00:00Z") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Release:
    package: str
    version: str
    upload_time: datetime


@dataclass(frozen=True)
class Instant:
    """One candidate moment: the environment is resolved as of ``cutoff``."""

    label: str
    cutoff: datetime
    releases: tuple[Release, ...]  # published at this instant (empty for the --since start)

    def to_dict(self) -> dict:
        return {"instant": self.label, "cutoff": iso(self.cutoff),
                "releases": [{"package": r.package, "version": r.version} for r in self.releases]}


def releases_of(files_by_package: Mapping[str, list], target: Target, *, pre: bool = False,
                specs: Mapping[str, str | None] | None = None) -> list[Release]:
    """The installable releases (for ``target``) of each package, with upload times."""
    out = []
    for package, files in files_by_package.items():
        cands, _ = select(files, target=target, specifier=(specs or {}).get(package), pre=pre)
        out += [Release(package, str(c.version), c.upload_time) for c in cands if c.upload_time is not None]
    return sorted(out, key=lambda r: (r.upload_time, r.package))


def instants(releases: Iterable[Release], since: datetime | None = None, until: datetime | None = None) -> list[Instant]:
    """The candidate instants, oldest first: ``since`` (if given), then each UTC day of a release."""
    days: dict[date, list[Release]] = defaultdict(list)
    for r in releases:
        if (since is None or r.upload_time >= since) and (until is None or r.upload_time < until):
            days[r.upload_time.astimezone(timezone.utc).date()].append(r)
    out = [Instant(iso(since), since, ())] if since is not None else []
    for day in sorted(days):
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        out.append(Instant(day.isoformat(), start + timedelta(days=1), tuple(days[day])))
    return out


@dataclass
class DateRequest:
    recipe: Recipe
    axes: tuple[Axis, ...] = ()  # packages whose releases make the instants (default: the recipe's deps)
    since: str | None = None
    until: str | None = None
    with_: tuple[str, ...] = ()
    pre: bool = False
    timeout: float = 600.0
    regress: RegressMode = RegressMode.EXIT
    thresholds: tuple[Threshold, ...] = ()
    retries: int = 0
    culprits: bool = True
    argv: list[str] = field(default_factory=list)


def date_mode(by: str, *, since: str | None, until: str | None, axis: list[str], deps: str,
              package: str | None, good: str | None, bad: str | None, find_fix: bool) -> bool:
    """Validate ``bisect run``'s ``--by`` and the flags that only fit one mode; True for dates."""
    if by not in ("version", "date"):
        raise ConfigError(f"--by {by!r} is not a mode; use --by version (default) or --by date")
    if by == "version":
        if since or until or axis:
            raise ConfigError("--since, --until and --axis apply to --by date; add --by date or drop them")
        return False
    clashes = [flag for flag, given in (("--package", package), ("--good", good), ("--bad", bad),
                                        ("--find-fix", find_fix), ("--deps", deps != "latest")) if given]
    if clashes:
        raise ConfigError(f"{', '.join(clashes)} apply to --by version; with --by date use --since/--until "
                          "and --axis PKG to choose the packages whose releases make the timeline")
    return True


def watched_packages(req: DateRequest) -> list[str]:
    """``--axis`` packages, else the recipe's dependencies that apply on this host."""
    if req.axes:
        return list(dict.fromkeys(canonicalize_name(a.package) for a in req.axes))
    names = [canonicalize_name(d.name) for d in req.recipe.dependencies if d.marker is None or d.marker.evaluate()]
    if not names:
        raise ConfigError("--by date needs packages whose releases make the timeline: add dependencies to the "
                          "recipe or pass --axis PKG")
    return list(dict.fromkeys(names))


def _list_files(session: Session, packages: list[str]) -> dict[str, list]:
    client = IndexClient(session.settings.index, cache_dir=session.settings.cache.http)
    try:
        return {p: client.project_files(p) for p in packages}
    finally:
        client.close()


def run_by_date(session: Session, req: DateRequest) -> dict:
    """Bisect the timeline for the first bad instant, then isolate the culprit package(s)."""
    started = time.monotonic()
    since = parse_when(req.since, "--since")
    until = parse_when(req.until, "--until", end_of_day=True)
    if since and until and since >= until:
        raise ConfigError(f"--since {req.since} must be before --until {req.until}; swap them")
    pins = parse_with(req.with_)
    packages = watched_packages(req)
    target = session.target()
    specs = {canonicalize_name(a.package): a.spec for a in req.axes}
    timeline = instants(releases_of(_list_files(session, packages), target, pre=req.pre, specs=specs), since, until)
    if not timeline:
        window = f" between {req.since or 'the first release'} and {req.until or 'now'}"
        raise NoCandidates(f"none of {', '.join(packages)} published an installable release{window}; "
                           "widen --since/--until or name other packages with --axis")
    reqs = requirements_for(req.recipe, pins)
    overrides = keep_visible(exact_pins(pins))
    judging = Judging(req.timeout, req.regress, req.thresholds, req.retries)
    sig = signature({"date": req.recipe.hash, "axes": [str(a) for a in req.axes], "since": req.since, "until": req.until,
                     "with": sorted(req.with_), "pre": req.pre, "timeout": req.timeout,
                     "regress": req.regress.value, "thresholds": [str(t) for t in req.thresholds],
                     "retries": req.retries, "python": session.interpreter.version,
                     "index": session.settings.index.redacted(), "installer": session.settings.installer})
    settings = {"packages": packages, "since": req.since, "until": req.until, "with": list(req.with_),
                "timeout": req.timeout, "regress": req.regress.value}
    labels = [t.label for t in timeline]
    with open_run(session, kind="date", recipe=req.recipe, judging=judging, signature=sig, settings=settings,
                  argv=req.argv, package=",".join(packages)) as run:
        def plan(i: int) -> tuple[list[str], Cutoff]:
            return reqs, Cutoff(iso(timeline[i].cutoff), overrides)

        outcome = search_ahead(session, run, Bisection(len(timeline), ends_first=session.settings.jobs <= 1), labels,
                               lambda i: run.start(labels[i], reqs, package=None, cutoff=plan(i)[1]), plan,
                               dict(req.recipe.settings.resources))
        res, learned = outcome.result, outcome.learned
        good, bad = learned.get(res.last_old), learned.get(res.first_new)
        trials: list[Probe] = []  # culprit isolation's probes
        isolation: Isolation | None = None
        if req.culprits and good and bad and good.resolved and bad.resolved:
            def test(pinned: dict[str, str], changes) -> Verdict:
                label = "culprit: " + ", ".join(c.describe() for c in changes)
                trials.append(run.probe(label, [f"{n}=={v}" for n, v in sorted(pinned.items())], package=None))
                return trials[-1].judgement.verdict
            isolation = isolate(good.resolved, bad.resolved, test)
        result = _result(session, req, run.id, res, timeline, learned, isolation, packages, target)
        if outcome.stopped:
            result["stopped"] = {"reason": outcome.stopped, "fix": outcome.fix}
        result.update(upstream.source_ranges(result, session.store.probes_for_run(run.id)))
        result["culprit_probes"] = len(trials)
        result["executed"] += sum(p.executed for p in trials)
        result["duration_s"] = round(time.monotonic() - started, 3)
        return run.finish(result)


def _result(session: Session, req: DateRequest, run_id: int, res, timeline: list[Instant],
            learned: dict[int, Probe], isolation: Isolation | None, packages: list[str], target: Target) -> dict:
    def label(i: int | None) -> str | None:
        return None if i is None else timeline[i].label

    rows = []
    for i, instant in enumerate(timeline):
        row = instant.to_dict()
        p = learned.get(i)
        row.update(outcome=p.judgement.outcome.value if p else None, reason=p.judgement.reason if p else None)
        rows.append(row)
    probes = [{"version": p.label, "outcome": p.judgement.outcome.value, "verdict": p.judgement.verdict.value,
               "reason": p.judgement.reason, "reused": p.reused, "flaky": p.flaky, "metrics": p.metrics,
               "resolved": p.resolved, "cutoff": iso(timeline[i].cutoff)}
              for i, p in ((i, learned[i]) for i in res.probed if i in learned)]
    first_bad = label(res.first_new)
    result = {
        "run_id": run_id, "kind": "date", "status": res.status.value, "packages": packages,
        "package": ", ".join(packages), "since": req.since, "until": req.until,
        "last_good": label(res.last_old), "first_bad": first_bad,
        **untestable_summary(learned.values()),
        "untestable_between": [label(i) for i in res.untestable_between],
        "flaky": [p.label for p in learned.values() if p.flaky], "timeline": rows, "probes": probes,
        "executed": sum(p.executed for p in learned.values()), "candidates": len(timeline),
        "culprits": [c.to_dict() for c in isolation.culprits] if isolation else [],
        "culprit": isolation.to_dict() if isolation else None,
        "recipe": req.recipe.shown, "recipe_hash": req.recipe.hash, "with": list(req.with_),
        "target": target.describe(), "envbisect": __version__, "host": host_info(session.interpreter.version),
        "index": session.settings.index.redacted(),
    }
    recipe = shlex.quote(req.recipe.shown)
    args = ["bisect", "run", recipe, "--by", "date", *map(shlex.quote, index_args(result["index"])), *(f"--axis {shlex.quote(str(a))}" for a in req.axes)]
    args += [f"--since {req.since}"] if req.since else []
    args += [f"--until {req.until}"] if req.until else []
    args += [f"--with {shlex.quote(w)}" for w in req.with_]
    result["reproduce"] = [" ".join(args)]
    if first_bad is not None:
        cutoff = iso(timeline[res.first_new].cutoff)
        result["reproduce"].append(uv_run(req.recipe.shown, [], Cutoff(cutoff), result["index"]))
    return result
