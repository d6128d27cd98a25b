"""The watch daemon: poll indexes, check new releases, bisect, attach the findings.

One cycle, per watch of ``bisect.toml``:

1. List the package's releases. The index client revalidates its cached page with
   ``If-None-Match`` (a 304 costs nothing), so polling often is cheap.
2. First run: probe the newest release and record it as the *baseline* (with its
   outcome); every listed release counts as seen, history is never bisected.
3. Later runs: listed releases the watch has not seen are new (set membership, so a
   backport published after a higher release is new too). They are judged in batches
   against the nearest judged release below them (judged as ``bisect run`` judges, with
   the recipe's reference and signature: :mod:`envbisect.watchprobe`): all of a small batch
   is probed (the newest first), a spread of a large one, and every change of verdict
   along that chain is bisected (``find_fix`` when bad turns good), so a regression
   introduced and fixed within one batch is found too (:mod:`envbisect.watchplan`).
4. A conclusive finding is recorded and queued in the watch's state, then attached to
   the issue (:mod:`envbisect.trackers`); a failed attachment stays queued and is retried
   on every later cycle. Inconclusive bisections are logged only.

A failed check keeps its error and backs off (:mod:`envbisect.watchstate`). State lives
in the ``watches`` and ``watch_releases`` tables, written only after a step is complete;
every probe is stored the moment it finishes: a daemon stopped at any point (SIGTERM,
SIGINT, kill -9) redoes at most the probe it was in, and interrupted bisections resume
by signature. SIGTERM/SIGINT raise :class:`Shutdown` in the main thread; the runner
kills the recipe's process group on the way out, so stopping takes a moment, not a
probe's length. One daemon per cache directory: a file lock, with the holder's PID in
a file beside it for the error message.

Logs: one line per event, to stderr and to ``<cache>/logs/watch.log`` (rotating;
:mod:`envbisect.watchdaemon`, with the daemon's lock and signal handling). The GitHub
token is read from the environment only when a request is made, so it never reaches the
store, the logs (a filter also masks it, should a message ever contain it), reports, or
recipes (the runner drops every ``*TOKEN*`` variable).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass, replace

from envbisect import reference, secrets
from envbisect.byversion import run_bisection
from envbisect.config import Settings
from envbisect.errors import EnvbisectError, TrackerError
from envbisect.index import IndexConfig
from envbisect.policy import RegressMode
from envbisect.recipes import Recipe, load_recipe
from envbisect.report import boundary_keys, headline
from envbisect.search import Verdict
from envbisect.requests_model import BisectRequest, Numerics, signature
from envbisect.session import Probe, Session
from envbisect.store import Store
from envbisect.trackers import GitHub, attach_run, parse_issue
from envbisect.watchconfig import WatchSpec
from envbisect.watchdaemon import LogHandler, Shutdown, daemon_lock, log, scrub, setup_logging, stop_on_signals
from envbisect.watchprobe import probe_release
from envbisect.watchplan import DECISIVE, Batch, batches, changes, grace_s, new_releases, probe_order, sample
from envbisect.watchstate import Known, WatchState, due_in, legacy_seen, schedule, short

#: While a finding waits to be attached, the daemon wakes at least this often to retry.
RETRY_PENDING_S = 900.0
#: ``--once`` exit status when a watch failed or a finding could not be attached yet.
EXIT_DEGRADED = 1


# ---------------------------------------------------------------------------- watcher


@dataclass
class _Context:
    """One watch's parts for one cycle."""

    spec: WatchSpec
    recipe: Recipe
    session: Session
    regress: RegressMode
    with_: tuple[str, ...]
    package: str
    #: The recipe's reference, tolerances and signature (judged as ``bisect run`` judges).
    numerics: Numerics


class Watcher:
    """Runs watch cycles against one cache directory and store."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def _context(self, spec: WatchSpec) -> _Context:
        recipe = load_recipe(spec.recipe)
        index = IndexConfig.resolve(secrets.environ(), index_url=spec.index_url or recipe.settings.index_url)
        settings = replace(self.settings, index=index, python=recipe.settings.python or self.settings.python)
        regress = RegressMode(recipe.settings.regress or RegressMode.EXIT.value)
        return _Context(spec, recipe, Session(settings, self.store, LogHandler(spec.name)), regress,
                        spec.with_ or recipe.settings.with_, spec.package, Numerics.of(recipe))

    def cycle(self, specs: list[WatchSpec], *, force: bool, once: bool = False) -> int:
        """Check every due watch (all with ``force``), then retry queued attachments.

        A watch counts as due a little early (:func:`envbisect.watchplan.grace_s`). Returns
        how many watches failed or still hold findings that could not be posted."""
        failures = 0
        for spec in specs:
            row = self.store.get_watch(spec.name)
            wait = due_in(spec, row, time.time())
            if force or wait <= grace_s(spec.every_s):
                failures += self._checked(spec, row)
            elif once:
                log.info("[%s] not due for %s; skipped (--force checks it now)", spec.name, short(wait))
            failures += self.flush(spec)
        return failures

    def _checked(self, spec: WatchSpec, row: dict | None) -> int:
        """Check one watch and store its schedule: 0 when it worked, 1 when it failed
        (the error is kept and the next try backs off)."""
        started, error = time.time(), None
        try:
            self.check(spec)
        except EnvbisectError as exc:
            error = scrub(str(exc))
        except Exception as exc:  # a daemon outlives one broken watch
            error = scrub(f"{type(exc).__name__}: {exc}")
        fields = schedule(spec, row, started, error)
        self.store.upsert_watch(spec.name, **fields)
        if error is not None:
            log.error("[%s] check failed (%d in a row): %s; next try in %s", spec.name, fields["failures"], error,
                      short(due_in(spec, fields, time.time())))
        return 0 if error is None else 1

    def check(self, spec: WatchSpec) -> None:
        """One check of one watch (steps 1–3 of the module docstring)."""
        ctx = self._context(spec)
        with ctx.session:  # its executor (a Dask client) is let go after the check
            self._check(spec, ctx)

    def _check(self, spec: WatchSpec, ctx: _Context) -> None:
        row = self.store.get_watch(spec.name)
        state = WatchState.load(row)
        cands, _excluded, _ = ctx.session.list_versions(ctx.package, ctx.recipe.settings.range, pre=spec.pre)
        if not cands:
            log.warning("[%s] %s has no release installable here; nothing to check", spec.name, ctx.package)
            return
        listed = [str(c.version) for c in cands]
        listing = hashlib.sha256(" ".join(listed).encode()).hexdigest()[:16]
        fields = dict(recipe=str(spec.recipe), package=ctx.package, last_seen=listed[-1],
                      index_url=ctx.session.settings.index.redacted()["index_url"], etag=listing)
        question = signature({"recipe": ctx.recipe.hash, "with": list(ctx.with_), "package": ctx.package,
                              "index": ctx.session.settings.index.redacted(), "pre": spec.pre,
                              **reference.signature_part(ctx.numerics)})
        if state.question not in (None, question):  # stored verdicts answer another question
            log.info("[%s] recipe, pins or index changed since the last check; new baseline", spec.name)
            return self._baseline(ctx, state, listed, fields, question)
        state.question = question
        seen = {v: r["verdict"] for v, r in self.store.watch_releases(spec.name).items()}
        seen = seen or legacy_seen(listed, row)
        if not seen:
            return self._baseline(ctx, state, listed, fields, question)
        new = new_releases(listed, seen)
        if not new:
            log.info("[%s] no new release of %s (newest %s)", spec.name, ctx.package, listed[-1])
            self.store.save_check(spec.name, {}, **fields)
            return
        log.info("[%s] new release(s) of %s: %s", spec.name, ctx.package, ", ".join(new))
        learned: dict[str, tuple[str, int]] = {}
        for batch in batches(listed, seen, new):
            self._judge(ctx, state, batch, seen, learned)
        state.judged(listed, {**seen, **{v: verdict for v, (verdict, _) in learned.items()}})
        self.store.save_check(spec.name, {**dict.fromkeys(new, (None, None)), **learned}, state=state.dump(), **fields)

    def _baseline(self, ctx: _Context, state: WatchState, listed: list[str], fields: dict, question: str) -> None:
        """First check (or the recipe changed): probe the newest release; every listed
        release counts as seen, and verdicts learned for another question are forgotten."""
        newest, state.question = listed[-1], question
        probe, run_id = self._probe(ctx, newest)
        state.baseline = state.last = Known(newest, probe.judgement.verdict.value)
        if probe.judgement.verdict is not Verdict.UNTESTABLE:
            state.known = state.baseline
        log.info("[%s] baseline %s %s: %s", ctx.spec.name, ctx.package, newest, probe.judgement.outcome.value)
        releases = {**dict.fromkeys(listed, (None, None)), newest: (probe.judgement.verdict.value, run_id)}
        self.store.save_check(ctx.spec.name, releases, forget=True, state=state.dump(), **fields)

    def _judge(self, ctx: _Context, state: WatchState, batch: Batch, seen: dict[str, str | None],
               learned: dict[str, tuple[str, int]]) -> None:
        """Probe a batch's releases (the newest first; all of a small batch, a spread of a
        large one) and bisect wherever the verdict changes along anchor, probes."""
        picks = sample(batch.releases, ctx.spec.batch_probes)
        for version in probe_order(picks):
            probe, run_id = self._probe(ctx, version)
            learned[version] = (probe.judgement.verdict.value, run_id)
        if batch.anchor is None:  # below the baseline, or what it followed was yanked
            log.info("[%s] no judged release below %s is listed; its verdicts are recorded, not compared",
                     ctx.spec.name, batch.releases[0])
        chain = [(batch.anchor, seen[batch.anchor])] if batch.anchor else []
        for change in changes(chain + [(v, learned[v][0]) for v in picks]):
            run_id = self._bisect(ctx, state, fix=change.fix, old=change.old, new=change.new)
            for row in self.store.probes_for_run(run_id):
                if row["version"] and row["verdict"] in DECISIVE:
                    learned.setdefault(row["version"], (row["verdict"], run_id))

    def _probe(self, ctx: _Context, version: str) -> tuple[Probe, int]:
        """One recorded probe of ``version`` (:func:`envbisect.watchprobe.probe_release`)."""
        return probe_release(ctx.session, ctx.recipe, ctx.numerics, watch=ctx.spec.name, package=ctx.package,
                             version=version, with_=ctx.with_, regress=ctx.regress)

    def _bisect(self, ctx: _Context, state: WatchState, *, fix: bool, old: str, new: str) -> int:
        """Bisect between two judged releases whose verdicts differ; record a conclusive
        finding and queue it for the issue. Returns the bisection's run id."""
        what = "fix" if fix else "regression"
        log.info("[%s] %s: %s %s is %s after %s %s; bisecting", ctx.spec.name, what, ctx.package, new,
                 "good" if fix else "bad", old, "bad" if fix else "good")
        good, bad = (new, old) if fix else (old, new)
        req = BisectRequest(recipe=ctx.recipe, package=ctx.package, spec=ctx.recipe.settings.range, good=good,
                            bad=bad, with_=ctx.with_, pre=ctx.spec.pre, timeout=ctx.recipe.settings.timeout,
                            regress=ctx.regress, find_fix=fix, argv=["watch", ctx.spec.name],
                            diverge_from=ctx.numerics.diverge_from, tolerance=ctx.numerics.tolerance,
                            signature=ctx.numerics.signature)
        result = run_bisection(ctx.session, req)
        run_id = result["run_id"]
        if result["status"] != "found":
            log.warning("[%s] %s (run %s): %s; logged only, not posted", ctx.spec.name, result["status"], run_id,
                        headline(result))
            return run_id
        log.info("[%s] found: %s (run %s)", ctx.spec.name, headline(result), run_id)
        old_key, new_key = boundary_keys(result)
        closed = state.found(what, str(result[new_key]), str(result[old_key]), run_id)
        if closed is not None:  # the fix's comment names the regression it closes
            log.info("[%s] %s: regression introduced in %s, fixed in %s", ctx.spec.name, ctx.package,
                     closed["version"], result[new_key])
            result["introduced_in"] = closed["version"]
            self.store.update_run(run_id, status=self.store.get_run(run_id)["status"], result=result)
        if ctx.spec.issue is None:
            log.info("[%s] no issue configured; see `bisect report %s`", ctx.spec.name, run_id)
            return run_id
        state.pending.append({"run_id": run_id, "issue": str(ctx.spec.issue), "kind": what})
        return run_id

    def flush(self, spec: WatchSpec) -> int:
        """Attach the watch's queued findings; returns how many are still queued."""
        state = WatchState.load(self.store.get_watch(spec.name))
        if not state.pending:
            return 0
        with GitHub() as tracker:
            for item in list(state.pending):
                try:
                    finding, posted = attach_run(self.store, tracker, item["run_id"], parse_issue(item["issue"]))
                except TrackerError as exc:
                    log.error("[%s] attaching run %s to %s failed: %s", spec.name, item["run_id"], item["issue"], exc)
                    break  # the same error would hit the rest; all stay queued
                except EnvbisectError as exc:  # the run vanished (database replaced): nothing to post
                    log.error("[%s] dropping queued finding of run %s: %s", spec.name, item["run_id"], exc)
                else:
                    log.info("[%s] attached %s %s to %s: %s %s", spec.name, finding.kind.value, finding.version,
                             item["issue"], posted.action.value, posted.comment.url)
                state.pending.remove(item)
                self.store.upsert_watch(spec.name, state=state.dump())
        return len(state.pending)

    def next_wake(self, specs: list[WatchSpec]) -> tuple[float, str]:
        """Seconds until the next watch is due (and its name), sooner if findings are queued."""
        now = time.time()
        wait, name = min((due_in(s, self.store.get_watch(s.name), now), s.name) for s in specs)
        if any(WatchState.load(self.store.get_watch(s.name)).pending for s in specs) and wait > RETRY_PENDING_S:
            wait, name = RETRY_PENDING_S, "queued attachments"
        return max(wait, 0.0), name


def run(specs: list[WatchSpec], settings: Settings, *, once: bool, force: bool = False,
        source: str = "bisect.toml", listens: list | None = None) -> int:
    """``bisect watch``: hold the lock, run cycles until stopped; returns the exit status.

    ``listens`` (``[[listen]]`` tables) are served by :class:`envbisect.listen.Listener`,
    one call per cycle (with ``--once`` every repository is polled: cron is the schedule)."""
    setup_logging(settings.cache)
    with daemon_lock(settings.cache.root), Store(settings.cache.db) as store, stop_on_signals():
        try:
            watcher = Watcher(settings, store)
            listener = _listener(listens, settings, store)
            log.info("watch started: %d watch(es) from %s, cache %s, PID %d%s", len(specs), source,
                     settings.cache.root, os.getpid(), ", one cycle" if once else "")
            while True:
                failures = watcher.cycle(specs, force=force, once=once)
                failures += listener.cycle(force=once or force) if listener else 0
                if once:
                    log.info("cycle done%s", f" with {failures} problem(s)" if failures else "")
                    return EXIT_DEGRADED if failures else 0
                wait, name = watcher.next_wake(specs) if specs else (float("inf"), "")
                if listener and listener.next_wake() < wait:
                    wait, name = listener.next_wake(), "issue comments"
                log.info("next check in %s (%s)", short(wait), name)
                time.sleep(wait)
        except Shutdown as stop:
            name = signal.Signals(stop.signum).name
            log.info("stopped by %s; any probe in progress was abandoned; the next start resumes", name)
            return 128 + stop.signum if once else 0


def _listener(listens: list | None, settings: Settings, store: Store):
    """The issue-comment listener for ``[[listen]]`` tables (None without any)."""
    if not listens:
        return None
    from envbisect.listen import Listener  # only daemons that listen pay for its imports

    log.info("listening on %s for /envbisect run requests", ", ".join(s.repository for s in listens))
    return Listener(listens, settings, store)
