"""Probing: one candidate -> an exact lock -> a content-addressed env -> recipe runs -> rows.

A :class:`Session` owns one job: learning the outcome of a recipe for one candidate's
requirements. It plans (:mod:`envbisect.plan`: the requirements resolved into a lock under
the run's cutoff), keys the probe, reuses a stored probe with the same key or builds the
env and runs the recipe, judges each run and writes every row the moment it exists. It
decides nothing about *which* candidate to probe (that is :mod:`envbisect.driver` and the
run modes) and formats nothing (progress goes to a :class:`Handler`).

The probe key (what makes a stored verdict reusable) and when a stored row still holds
are :mod:`envbisect.probekey`.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Protocol

from envbisect.config import Settings
from envbisect.envs import EnvManager, EnvSpec
from envbisect.executor import LocalExecutor, ProbeTask, TaskResult, Workshop, public_index
from envbisect.host import fingerprint, fingerprint_id
from envbisect.index import DistFile, IndexClient
from envbisect.installer import Interpreter, find_interpreter
from envbisect.nightly import display, explain_install_failure
from envbisect.plan import Cutoff, Lock, Planner, Unresolvable
from envbisect.policy import Judgement, combine, install_failure
from envbisect.probekey import env_values, probe_key, reusable
from envbisect.recipes import Recipe
from envbisect.redact import redact
from envbisect.requests_model import Judging
from envbisect.store import Store
from envbisect.versions import Candidate, Excluded, Target, select

#: Columns of a raw recipe run that a reused probe copies from the row it reuses.
_RAW_FIELDS = ("exit_code", "signal", "timed_out", "duration_s", "stdout_tail", "stderr_tail", "log_path",
               "metrics", "metrics_note", "resolved", "env_build_s", "timeout_s", "source", "outputs", "outputs_note",
               "comparison", "env_changed")


class Handler(Protocol):
    """Receives progress events; the CLI's renderer implements it."""

    def probe_started(self, label: str, step: int, estimate: int) -> None: ...

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None: ...

    def note(self, message: str) -> None: ...


class Decider(Protocol):
    """When a probe's rows suffice (``--samples auto``, :mod:`envbisect.noisy`); without
    one a probe makes ``--retries`` + 1 attempts. ``decide``: (judgement, flaky), or None
    to run another sample; ``row_judgement``: what to record with the newest row."""

    def decide(self, rows: list[dict]) -> tuple[Judgement, bool] | None: ...

    def row_judgement(self, rows: list[dict]) -> Judgement: ...


class SilentHandler:
    def probe_started(self, label: str, step: int, estimate: int) -> None:
        pass

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class Pending:
    """A probe whose recipe runs are under way on the executor (one attempt at a time)."""

    task: ProbeTask
    judging: Judging
    common: dict
    files: tuple
    seq: int | None
    judgements: list[Judgement]
    metrics: dict | None
    executed: int = 0
    future: futures.Future | None = None
    decider: Decider | None = None
    #: The rows so far (the decider's input): prior attempts and the runs since.
    rows: list[dict] = field(default_factory=list)


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
    seq: int | None = None
    #: The host fingerprint id of the machine that ran it (:mod:`envbisect.host`).
    where: str | None = None


class Session:
    """Runs probes against one cache directory and store."""

    def __init__(self, settings: Settings, store: Store, handler: Handler | None = None) -> None:
        self.settings = settings
        self.store = store
        self.handler = handler or SilentHandler()
        self.envs = EnvManager(settings.cache)
        self._interpreter: Interpreter | None = None
        self._planner: Planner | None = None
        self._executor = None

    @property
    def fingerprint(self) -> dict[str, str]:
        """This host's fingerprint (detected once per process, on first use)."""
        return fingerprint()

    @property
    def host(self) -> str:
        return fingerprint_id(self.fingerprint)

    # --- candidates ----------------------------------------------------------------

    @property
    def interpreter(self) -> Interpreter:
        if self._interpreter is None:
            self._interpreter = find_interpreter(self.settings.python, download=self.settings.download_python)
        return self._interpreter

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            self._planner = Planner(self.interpreter.path, self.settings.index, self.settings.cache.uv_cache,
                                    allow_build=self.settings.allow_build)
        return self._planner

    @property
    def executor(self):
        """Where recipes run (:mod:`envbisect.executor`): this machine, or Dask workers."""
        if self._executor is None:
            if self.settings.executor == "dask":
                from envbisect.dask_executor import DaskExecutor

                from envbisect.outputs import store_root

                self._executor = DaskExecutor(self.settings.scheduler, python=self.settings.python,
                                              outputs_root=store_root(self.settings.cache.root))
            else:
                shop = Workshop(self.settings.cache, self.settings.index, self.interpreter, envs=self.envs)
                self._executor = LocalExecutor(shop, self.settings.jobs)
        return self._executor

    def close(self) -> None:
        """Let go of the executor (a Dask client); probes already recorded stay."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def target(self) -> Target:
        if self.settings.python is None:
            return Target.host(None)
        # --python may be a path: the tags follow the interpreter it resolves to.
        return Target.host(".".join(self.interpreter.version.split(".")[:2]))

    def list_versions(self, package: str, spec: str | None, *, pre: bool,
                      target: Target | None = None) -> tuple[list[Candidate], list[Excluded], Target]:
        target = target or self.target()
        with IndexClient(self.settings.index, cache_dir=self.settings.cache.http) as client:
            files = client.project_files(package)
        cands, excluded = select(files, target=target, specifier=spec, pre=pre,
                                 allow_build=self.settings.allow_build)
        return cands, excluded, target

    # --- one probe -----------------------------------------------------------------

    def lock(self, requirements: list[str], cutoff: Cutoff = Cutoff()) -> Lock | Unresolvable:
        """Resolve ``requirements`` into a lock (kept in the store by its hash)."""
        lock = self.planner.lock(requirements, cutoff)
        if isinstance(lock, Lock):
            self.store.put_lock(lock.hash, lock.text)
        return lock

    def env_spec(self, lock: Lock, *, offline: bool = False) -> EnvSpec:
        return EnvSpec(self.interpreter, lock, self.settings.index, installer=self.settings.installer,
                       allow_build=self.settings.allow_build, offline=offline)

    def probe(self, run_id: int, recipe: Recipe, label: str, requirements: list[str], *,
              package: str | None, judging: Judging, cutoff: Cutoff = Cutoff(),
              files: tuple[DistFile, ...] = (), prior: list[dict] | None = None,
              lock: Lock | None = None) -> Probe:
        """Learn the outcome of ``recipe`` for ``requirements`` (resolved as of ``cutoff``):
        from a stored probe with the same key (unless ``--no-reuse``), else by running it.
        :meth:`start` and :meth:`wait` in one call; see :meth:`start` for the arguments."""
        begun = self.start(run_id, recipe, label, requirements, package=package, judging=judging, cutoff=cutoff,
                           files=files, prior=prior, lock=lock)
        return begun if isinstance(begun, Probe) else self.wait([begun])[0]

    def start(self, run_id: int, recipe: Recipe, label: str, requirements: list[str], *,
              package: str | None, judging: Judging, cutoff: Cutoff = Cutoff(),
              files: tuple[DistFile, ...] = (), prior: list[dict] | None = None,
              lock: Lock | None = None, decider: Decider | None = None,
              knobs: dict[str, str] | None = None) -> Probe | Pending:
        """Resolve, key and look up a probe; a :class:`Probe` when that settles it (a stored
        probe with the same key, or a candidate that cannot be resolved), else a
        :class:`Pending` whose first recipe run was handed to the executor.

        ``prior`` are this run's rows for the same candidate left by an interrupted
        attempt sequence (``--retries``): their seq is kept and only the missing attempts
        run. ``files`` are the candidate's listed files: when the install fails because
        they vanished from the index since the listing, the reason says "build pruned".
        ``lock`` is the resolution when the caller already made it (``bisect matrix``).
        ``decider`` (``--samples auto``) says when the rows suffice; stored samples with the
        same key are copied in attempt order while it wants more, then new ones run.
        ``knobs`` are environment values that apply ``bisect narrow``'s knob settings
        (:func:`envbisect.knobs.probe_values`): passed to the recipe and part of the key.
        Raises :class:`~envbisect.errors.IndexUnreachable` on an outage (nothing recorded).
        """
        prior = list(prior or [])
        seq = prior[0]["seq"] if prior else None
        values = dict(env_values(recipe), **(knobs or {}))
        common = dict(recipe_hash=recipe.hash, host=self.host, fingerprint=self.fingerprint, package=package,
                      version=label, requirements=requirements, timeout_s=judging.timeout, env_values=values)
        lock = lock or self.lock(requirements, cutoff)
        if isinstance(lock, Unresolvable):
            return self._untestable(run_id, seq, label, lock.reason, common)
        resources = dict(recipe.settings.resources)
        if self.settings.reuse and (decider is not None or not prior):
            keys = [probe_key(recipe.hash, place.env_key(lock.hash, self.settings.installer), place.host, values)
                    for place in self.executor.places(resources)]
            stored = [r for r in reusable(self.store.find_reusable(*keys), judging.timeout) if judging.reusable(r)]
            if decider is None and len(stored) >= judging.attempts:
                return self._reuse(run_id, label, stored[:judging.attempts], judging, dict(common, lock_hash=lock.hash))
            if decider is not None:
                prior, done = self._reuse_samples(run_id, label, prior, stored, decider,
                                                  dict(common, lock_hash=lock.hash))
                if done is not None:
                    return done
                seq = prior[0]["seq"] if prior else None
        task = ProbeTask(run_id, label, len(prior), recipe.path.name, recipe.text, recipe.hash, lock.text,
                         judging.timeout, values, self.settings.python, self.settings.installer,
                         self.settings.allow_build, recipe.settings.exclusive, resources,
                         public_index(self.settings.index), str(recipe.path),
                         judging.reference.as_dict() if judging.reference else None)
        pending = Pending(task, judging, dict(common, lock_hash=lock.hash), files, seq,
                          [judging.judge(r) for r in prior],
                          prior[0].get("metrics") if prior else None, decider=decider, rows=list(prior))
        pending.future = self.executor.submit(task)
        return pending

    def wait(self, pending: list[Pending]) -> list[Probe]:
        """Finish every pending probe (recording each run as its result arrives, in this
        thread only) and return their probes in the same order."""
        done: dict[int, Probe] = {}
        while len(done) < len(pending):
            waiting = {id(p.future): i for i, p in enumerate(pending) if i not in done}
            finished, _ = futures.wait([p.future for i, p in enumerate(pending) if i not in done],
                                       return_when=futures.FIRST_COMPLETED)
            for future in finished:
                i = waiting[id(future)]
                if (probe := self._advance(pending[i])) is not None:
                    done[i] = probe
        return [done[i] for i in range(len(pending))]

    def _advance(self, p: Pending) -> Probe | None:
        """Record the run that just finished; submit the next attempt or return the probe."""
        out: TaskResult = p.future.result()
        task = p.task
        where = dict(p.common, host=out.place.host, fingerprint=out.place.fingerprint, env_key=out.env_key,
                     probe_key=probe_key(task.recipe_hash, out.env_key, out.place.host, task.env_values))
        if out.install_failed is not None:
            why = explain_install_failure(out.install_failed, p.files, self.settings.index) if p.files \
                else out.install_failed
            return self._untestable(task.run_id, p.seq, task.label, why, where)
        row = dict(out.raw, resolved=out.resolved, env_build_s=out.env_build_s, attempt=task.attempt,
                   source=out.source)
        p.rows.append(row)
        j = p.judging.judge(out.raw) if p.decider is None \
            else p.decider.row_judgement(p.rows)
        p.judgements.append(j)
        _, p.seq = self.store.record_probe(task.run_id, seq=p.seq, attempt=task.attempt, **_pick(row),
                                           **_judged(j), **where)
        p.metrics = p.metrics if p.metrics is not None else out.raw.get("metrics")
        p.executed += 1
        decided = p.decider.decide(p.rows) if p.decider is not None else None
        more = decided is None if p.decider is not None else task.attempt + 1 < p.judging.attempts
        if more:
            p.task = replace(task, attempt=task.attempt + 1)
            p.future = self.executor.submit(p.task)
            return None
        verdict, flaky = decided if decided is not None else combine(p.judgements)
        if flaky:
            self.store.mark_flaky(task.run_id, p.seq)
        self.handler.probe_finished(display(task.label), verdict, False)
        return Probe(task.label, verdict, flaky, False, p.executed, out.resolved, p.metrics, p.seq, out.place.host)

    def _reuse(self, run_id: int, label: str, rows: list[dict], judging: Judging, common: dict) -> Probe:
        """Copy stored rows into this run (``reused_from``), judged under today's settings."""
        judgements = [judging.judge(r) for r in rows]
        verdict, flaky = combine(judgements)
        seq = None
        for i, row in enumerate(rows):
            seq = self._copy(run_id, seq, i, row, judgements[i], common, flaky)
        self.handler.probe_finished(display(label), verdict, True)
        return Probe(label, verdict, flaky, True, 0, rows[0].get("resolved") or {}, rows[0].get("metrics"), seq,
                     rows[0].get("host"))

    def _copy(self, run_id: int, seq: int | None, attempt: int, row: dict, j: Judgement, common: dict,
              flaky: bool = False) -> int:
        """Copy one stored row into this run (``reused_from``) as ``attempt``; returns the seq."""
        # Where the stored row ran (this host, or the Dask worker that ran it).
        fields = dict(common, timeout_s=row.get("timeout_s"), host=row.get("host"),
                      fingerprint=row.get("fingerprint") or common["fingerprint"], env_key=row.get("env_key"),
                      probe_key=row.get("probe_key"))
        return self.store.record_probe(run_id, seq=seq, attempt=attempt, reused_from=row["id"], flaky=int(flaky),
                                       **_pick(row), **_judged(j), **fields)[1]

    def _reuse_samples(self, run_id: int, label: str, prior: list[dict], stored: list[dict], decider: Decider,
                       common: dict) -> tuple[list[dict], Probe | None]:
        """Copy stored samples of the same key into this run, in attempt order (the newest
        row of each attempt: sample ``i`` of any run ran with ``ENVBISECT_SAMPLE=i``), while
        ``decider`` wants more. Returns the rows now held, and the probe when they suffice."""
        by_attempt: dict[int, dict] = {}
        for row in stored:  # newest first
            by_attempt.setdefault(int(row.get("attempt") or 0), row)
        rows, seq = list(prior), (prior[0]["seq"] if prior else None)
        while len(rows) in by_attempt and decider.decide(rows) is None:
            row = by_attempt[len(rows)]
            rows.append(row)
            seq = self._copy(run_id, seq, len(rows) - 1, row, decider.row_judgement(rows), common)
        decided = decider.decide(rows)
        if len(rows) == len(prior) or decided is None:
            return [dict(r, seq=seq) for r in rows], None
        self.handler.probe_finished(display(label), decided[0], True)
        return rows, Probe(label, decided[0], decided[1], True, 0, rows[0].get("resolved") or {},
                           rows[0].get("metrics"), seq, rows[0].get("host"))

    def record_incompatible(self, run_id: int, recipe: Recipe, label: str, requirements: list[str],
                            reason: str, *, outcome: str) -> None:
        """Record a combination the resolver rejected, without probing it (``bisect matrix``)."""
        self.store.record_probe(run_id, attempt=0, recipe_hash=recipe.hash, host=self.host, package=None,
                                version=label, requirements=requirements, outcome=outcome,
                                verdict="untestable", reason=reason)

    def _untestable(self, run_id: int, seq: int | None, label: str, why: str, common: dict) -> Probe:
        """Record a candidate whose requirements could not be resolved or installed."""
        j = install_failure(why)
        _, seq = self.store.record_probe(run_id, seq=seq, attempt=0, **_judged(j), **common)
        self.handler.probe_finished(display(label), j, False)
        return Probe(label, j, False, False, 0, {}, None, seq, common.get("host"))


def _judged(j: Judgement) -> dict:
    return {"outcome": j.outcome.value, "verdict": j.verdict.value, "reason": redact(j.reason)}


def _pick(row: dict) -> dict:
    """The raw fields of ``row`` to store; output tails are redacted (the runner already
    redacts them; rows reused from an older database may not be)."""
    picked = {k: row.get(k) for k in _RAW_FIELDS if k in row and k != "timeout_s"}
    for key in ("stdout_tail", "stderr_tail"):
        if isinstance(picked.get(key), str):
            picked[key] = redact(picked[key])
    return picked



