"""One bisection or check: wires versions -> envs -> runner -> policy -> search -> store.

A session owns no formatting: progress goes to a :class:`Handler` (the CLI renders it
with rich), and every result is a plain dict that ``report`` renders. Every probe is
written to the store the moment it finishes, so a run killed at any point resumes: the
same command finds its unfinished run by signature and every version the store already
knows is taken from there instead of being run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbisect import __version__
from envbisect.config import Settings, host_id, host_info
from envbisect.envs import EnvManager, EnvSpec, find_interpreter
from envbisect.errors import ConfigError, InstallFailed
from envbisect.index import DEFAULT_INDEX_URL, DistFile, IndexClient, IndexConfig, strip_credentials
from envbisect.nightly import display, explain_install_failure
from envbisect.policy import Judgement, RegressMode, Threshold, combine, install_failure, judge
from envbisect.recipes import Recipe, load_recipe
from envbisect.runner import run_recipe
from envbisect.store import Store
from envbisect.versions import Candidate, Excluded, Target, select


class Handler(Protocol):
    """Receives progress events; the CLI's renderer implements it."""

    def probe_started(self, label: str, step: int, estimate: int) -> None: ...

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None: ...

    def note(self, message: str) -> None: ...


class SilentHandler:
    def probe_started(self, label: str, step: int, estimate: int) -> None:
        pass

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class Probe:
    """What the session learned about one candidate (possibly from several attempts)."""

    label: str
    judgement: Judgement
    flaky: bool
    reused: bool
    executed: int
    resolved: dict[str, str]
    metrics: dict | None


class DepsMode(str, Enum):
    """``--deps``: how a bisection resolves the recipe's dependencies other than the
    bisected package (see the README's "Combinations, dates and culprits")."""

    #: The newest compatible versions today, for every candidate.
    LATEST = "latest"
    #: As of each candidate's upload time (uv --exclude-newer), the candidate exempt.
    AS_OF_RELEASE = "as-of-release"


@dataclass
class BisectRequest:
    recipe: Recipe
    package: str
    spec: str | None = None
    good: str | None = None
    bad: str | None = None
    verify: bool = True
    with_: tuple[str, ...] = ()
    pre: bool = False
    timeout: float = 600.0
    regress: RegressMode = RegressMode.EXIT
    thresholds: tuple[Threshold, ...] = ()
    find_fix: bool = False
    retries: int = 0
    argv: list[str] = field(default_factory=list)
    #: Nightly channels (envbisect.nightly): the build variant to use, nightlies only,
    #: the window between two releases, and packages the bisected one replaces in the
    #: recipe's dependencies (tensorflow when bisecting tf-nightly).
    variant: str | None = None
    nightly: bool = False
    window: object | None = None
    replaces: tuple[str, ...] = ()
    #: How the recipe's other dependencies are chosen for each candidate (--deps).
    deps: DepsMode = DepsMode.LATEST


def parse_with(items: tuple[str, ...] | list[str]) -> list[Requirement]:
    """``--with PKG==VER`` (or ``--with PKG``) values as requirements."""
    out = []
    for item in items:
        try:
            out.append(Requirement(item))
        except InvalidRequirement as exc:
            raise ConfigError(f"--with {item!r} is not a requirement ({exc}); use e.g. --with numpy==1.26.4") from exc
    return out


def requirements_for(recipe: Recipe, pins: list[Requirement], package: str | None = None,
                     version: str | None = None, drop: tuple[str, ...] = ()) -> list[str]:
    """The recipe's dependencies with ``package==version`` and the ``--with`` pins replacing
    the recipe's own requirement for those packages (and for those in ``drop``)."""
    pinned = {canonicalize_name(p.name) for p in pins} | {canonicalize_name(d) for d in drop}
    if package:
        pinned.add(canonicalize_name(package))
    reqs = [str(d) for d in recipe.dependencies if canonicalize_name(d.name) not in pinned]
    if package and version:
        reqs.append(f"{package}=={version}")
    reqs += [str(p) for p in pins]
    return reqs


def signature(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Session:
    """Runs probes and bisections against one cache directory."""

    def __init__(self, settings: Settings, store: Store, handler: Handler | None = None) -> None:
        self.settings = settings
        self.store = store
        self.handler = handler or SilentHandler()
        self.envs = EnvManager(settings.cache)
        self.host = host_id()
        self._interpreter = None

    # --- candidates ----------------------------------------------------------------

    @property
    def interpreter(self):
        if self._interpreter is None:
            self._interpreter = find_interpreter(self.settings.python, download=self.settings.download_python)
        return self._interpreter

    def target(self) -> Target:
        if self.settings.python is None:
            return Target.host(None)
        # --python may be a path: the tags follow the interpreter it resolves to.
        return Target.host(".".join(self.interpreter.version.split(".")[:2]))

    def list_versions(self, package: str, spec: str | None, *, pre: bool,
                      target: Target | None = None) -> tuple[list[Candidate], list[Excluded], Target]:
        target = target or self.target()
        client = IndexClient(self.settings.index, cache_dir=self.settings.cache.http)
        try:
            files = client.project_files(package)
        finally:
            client.close()
        cands, excluded = select(files, target=target, specifier=spec, pre=pre,
                                 allow_build=self.settings.allow_build)
        return cands, excluded, target

    # --- runs ----------------------------------------------------------------------

    def open_run(self, *, kind: str, recipe: Recipe, package: str | None, spec: str | None,
                 signature: str, settings: dict, argv: list[str]) -> int:
        """Resume the unfinished run with this signature (an interrupted or killed run of
        the same command), or create a new one; returns its id."""
        resumed = self.store.find_resumable_run(signature)
        if resumed:
            self.store.update_run(resumed["id"], status="running")
            self.handler.note(f"resuming run {resumed['id']}")
            return resumed["id"]
        return self.store.create_run(kind=kind, recipe_path=str(recipe.path), recipe_hash=recipe.hash,
                                     package=package, spec=spec, signature=signature, settings=settings,
                                     argv=argv)

    # --- one probe -----------------------------------------------------------------

    def env_spec(self, requirements: list[str], *, exclude_newer: str | None = None,
                 exclude_newer_package: tuple[str, ...] = ()) -> EnvSpec:
        return EnvSpec(self.interpreter, tuple(requirements), self.settings.index,
                       exclude_newer=exclude_newer, exclude_newer_package=exclude_newer_package,
                       installer=self.settings.installer, allow_build=self.settings.allow_build)

    def probe(self, run_id: int, recipe: Recipe, label: str, requirements: list[str], *,
              package: str | None, timeout: float, regress: RegressMode,
              thresholds: tuple[Threshold, ...] = (), retries: int = 0,
              reuse: bool = True, exclude_newer: str | None = None,
              exclude_newer_package: tuple[str, ...] = (), files: tuple[DistFile, ...] = ()) -> Probe:
        """Learn the outcome of ``recipe`` in the env for ``requirements``: from the store
        when a run with the same recipe, env and host is recorded, else by running it.
        ``exclude_newer`` resolves the environment as of that instant (uv's
        ``--exclude-newer``), with ``exclude_newer_package`` overrides. ``files`` are the
        candidate's listed files: when the install fails because they vanished from the
        index since the listing, the probe says "build pruned from the index"."""
        spec = self.env_spec(requirements, exclude_newer=exclude_newer,
                             exclude_newer_package=exclude_newer_package)
        attempts = 1 + retries
        seq = len(self.store.probes_for_run(run_id))
        common = dict(recipe_hash=recipe.hash, env_key=spec.key, host=self.host, package=package,
                      version=label, requirements=requirements)
        stored = self._stored(run_id, recipe.hash, spec.key, reuse)
        if len(stored) >= attempts:
            rows = stored[:attempts]
            judgements = [judge(r, regress, thresholds) for r in rows]
            verdict, flaky = combine(judgements)
            for i, row in enumerate(rows):
                self.store.add_probe(run_id, seq=seq, attempt=i, reused_from=row["id"], flaky=int(flaky),
                                     **self._row_fields(row), **self._judged(judgements[i]), **common)
            self.handler.probe_finished(display(label), verdict, True)
            return Probe(label, verdict, flaky, True, 0, rows[0].get("resolved") or {}, rows[0].get("metrics"))
        try:
            env = self.envs.ensure(spec)
        except InstallFailed as exc:
            why = explain_install_failure(str(exc), files, self.settings.index) if files else str(exc)
            return self._untestable(run_id, seq, label, why, common)
        judgements, first = [], None
        with self.envs.in_use(env):
            for attempt in range(attempts):
                log = self.settings.cache.logs / f"run-{run_id}" / f"{seq:03d}-{_safe(label)}-{attempt}.log"
                try:
                    raw = run_recipe(env.python, recipe.path, timeout=timeout, log_path=log,
                                     scratch_dir=self.settings.cache.scratch)
                except InstallFailed as exc:  # the env's interpreter cannot start
                    return self._untestable(run_id, seq, label, str(exc), common)
                j = judge(raw, regress, thresholds)
                judgements.append(j)
                row = dict(raw.to_dict(), resolved=env.resolved, env_build_s=env.build_s if attempt == 0 else 0.0)
                self.store.add_probe(run_id, seq=seq, attempt=attempt, **self._row_fields(row),
                                     **self._judged(j), **common)
                first = first or raw
        verdict, flaky = combine(judgements)
        if flaky:
            self.store.mark_flaky(run_id, seq)
        self.handler.probe_finished(display(label), verdict, False)
        return Probe(label, verdict, flaky, False, attempts, env.resolved, first.metrics)

    def _untestable(self, run_id: int, seq: int, label: str, why: str, common: dict) -> Probe:
        """Record a candidate whose environment could not be built or started."""
        j = install_failure(why)
        self.store.add_probe(run_id, seq=seq, attempt=0, outcome=j.outcome.value,
                             verdict=j.verdict.value, reason=j.reason, **common)
        self.handler.probe_finished(display(label), j, False)
        return Probe(label, j, False, False, 0, {}, None)

    def _stored(self, run_id: int, recipe_hash: str, env_key: str, reuse: bool) -> list[dict]:
        rows = self.store.find_probes(recipe_hash=recipe_hash, env_key=env_key, host=self.host)
        # A probe that never ran the recipe (install failure) is not reused across runs:
        # the index or network may have changed since.
        rows = [r for r in rows if r.get("log_path") or r.get("timed_out") or r.get("exit_code") is not None
                or r.get("signal") is not None]
        if not reuse:
            rows = [r for r in rows if r["run_id"] == run_id]
        return rows

    @staticmethod
    def _judged(j: Judgement) -> dict:
        return {"outcome": j.outcome.value, "verdict": j.verdict.value, "reason": j.reason}

    @staticmethod
    def _row_fields(row: dict) -> dict:
        keys = ("exit_code", "signal", "timed_out", "duration_s", "stdout_tail", "stderr_tail",
                "log_path", "metrics", "metrics_note", "resolved", "env_build_s")
        return {k: row.get(k) for k in keys if k in row}


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_+" else "_" for c in label)[:60]


def as_version(text: str, flag: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise ConfigError(f"{flag} {text!r} is not a version; use a release number such as 2.16.1") from exc


def run_meta(recipe: Recipe, settings: Settings, python_version: str) -> dict:
    return {"recipe": recipe.shown, "recipe_hash": recipe.hash, "envbisect": __version__,
            "host": host_info(python_version), "index": settings.index.redacted(),
            "installer": settings.installer}



def run_check(session: Session, recipe: Recipe, *, with_: tuple[str, ...], timeout: float,
              regress: RegressMode, thresholds: tuple[Threshold, ...] = (), argv: list[str] | None = None) -> dict:
    """``bisect check``: one probe of the recipe in a cached env, recorded like any probe."""
    started = time.monotonic()
    reqs = requirements_for(recipe, parse_with(with_))
    run_id = session.store.create_run(
        kind="check", recipe_path=str(recipe.path), recipe_hash=recipe.hash, package=None, spec=None,
        signature=signature({"check": recipe.hash, "reqs": reqs, "t": time.time()}),
        settings={"with": list(with_), "timeout": timeout, "regress": regress.value}, argv=argv or [])
    label = ", ".join(with_) or "latest"
    session.handler.probe_started(label, 1, 1)
    try:
        probe = session.probe(run_id, recipe, label, reqs, package=None, timeout=timeout, regress=regress,
                              thresholds=thresholds, reuse=session.settings.reuse)
    except BaseException:
        session.store.update_run(run_id, status="interrupted")
        raise
    row = session.store.probes_for_run(run_id)[-1]
    result = dict(run_meta(recipe, session.settings, session.interpreter.version), run_id=run_id, kind="check",
                  status=probe.judgement.outcome.value, outcome=probe.judgement.outcome.value,
                  verdict=probe.judgement.verdict.value, reason=probe.judgement.reason,
                  metrics=probe.metrics, metrics_note=row.get("metrics_note"), resolved=probe.resolved,
                  requirements=reqs, env_key=row.get("env_key"), reused=probe.reused, executed=probe.executed,
                  stderr_tail=(row.get("stderr_tail") or "")[-2000:], log_path=row.get("log_path"),
                  duration_s=round(time.monotonic() - started, 3))
    session.store.update_run(run_id, status="done", result=result)
    return result


def _offline_spec(session: Session, row: dict, stored: dict) -> EnvSpec:
    """An env spec pinning exactly what a probe resolved, built from uv's cache only."""
    index = stored.get("index") or {}
    config = IndexConfig(strip_credentials(index.get("index_url") or DEFAULT_INDEX_URL),
                         tuple(strip_credentials(u) for u in index.get("extra_index_urls") or ()),
                         tuple(index.get("find_links") or ()))
    pins = tuple(f"{name}=={ver}" for name, ver in sorted(row["resolved"].items()) if "://" not in ver)
    interpreter = session.interpreter
    wanted = stored.get("python")
    if wanted and wanted != interpreter.version:  # the run used another Python: find that one
        interpreter = find_interpreter(".".join(wanted.split(".")[:2]))
    return EnvSpec(interpreter, pins, config, installer="uv", allow_build=bool(stored.get("allow_build")),
                   offline=True)


def rerun_probe(session: Session, run_id: int, seq: int, *, argv: list[str] | None = None) -> dict:
    """``bisect show RUN --rerun SEQ``: run a recorded probe again from the cache, offline.

    Nightly channels prune old builds, so a finished run must stay checkable without
    them: the probe's environment is used as the cache kept it; if it was evicted, it
    is rebuilt by uv ``--offline`` from uv's cache, pinned to the versions the probe
    resolved. The re-run is recorded as a ``check`` run naming the probe it repeats.
    """
    store = session.store
    run = store.get_run(run_id)
    rows = [r for r in store.probes_for_run(run_id) if r["seq"] == seq]
    if not rows:
        raise ConfigError(f"run {run_id} has no probe #{seq}; list its probes with `bisect show {run_id}`")
    row = rows[0]
    if not row.get("resolved"):
        raise ConfigError(f"probe #{seq} of run {run_id} never ran the recipe ({row.get('reason') or 'no env'}); "
                          f"pick one that ran from `bisect show {run_id}`")
    recipe = load_recipe(run["recipe_path"])
    stored = run.get("settings") or {}
    env, source = session.envs.lookup_key(row["env_key"]), "kept environment"
    if env is None:
        env, source = session.envs.ensure(_offline_spec(session, row, stored)), "rebuilt offline from the uv cache"
    regress = RegressMode(stored.get("regress") or RegressMode.EXIT.value)
    thresholds = tuple(Threshold.parse(t) for t in stored.get("thresholds") or [])
    label = row.get("version") or "probe"
    new_id = store.create_run(
        kind="check", recipe_path=str(recipe.path), recipe_hash=recipe.hash, package=row.get("package"), spec=None,
        signature=signature({"rerun": [run_id, seq], "t": time.time()}),
        settings={"rerun_of": {"run": run_id, "seq": seq}, "regress": regress.value}, argv=argv or [])
    session.handler.probe_started(display(label), 1, 1)
    with session.envs.in_use(env):
        raw = run_recipe(env.python, recipe.path, timeout=float(stored.get("timeout") or recipe.settings.timeout),
                         log_path=session.settings.cache.logs / f"run-{new_id}" / f"001-{_safe(label)}-0.log",
                         scratch_dir=session.settings.cache.scratch)
    j = judge(raw, regress, thresholds)
    store.add_probe(new_id, seq=1, attempt=0, recipe_hash=recipe.hash, env_key=env.key, host=session.host,
                    package=row.get("package"), version=label, requirements=row.get("requirements"),
                    **Session._row_fields(dict(raw.to_dict(), resolved=env.resolved)), **Session._judged(j))
    session.handler.probe_finished(display(label), j, False)
    result = {"run_id": new_id, "kind": "check", "rerun_of": {"run": run_id, "seq": seq, "version": label},
              "status": j.outcome.value, "outcome": j.outcome.value, "verdict": j.verdict.value, "reason": j.reason,
              "original_outcome": row.get("outcome"), "environment": source, "env_key": env.key,
              "recipe_changed": recipe.hash != run["recipe_hash"], "metrics": raw.metrics, "resolved": env.resolved}
    store.update_run(new_id, status="done", result=result)
    return result
