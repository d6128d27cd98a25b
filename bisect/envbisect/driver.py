"""The one run driver: open or resume a run, own its bookkeeping, drive a search.

Every kind of run (release bisection, date bisection, nightlies, matrix, check, watch)
goes through :func:`open_run`, which

* removes what killed runs left behind: scratch directories and half-built environments
  named after a process that is gone (:func:`envbisect.cachemgr.sweep`);
* checks the recipe compiles with the env's interpreter (a syntax error costs no env);
* claims the run atomically (:meth:`envbisect.store.Store.claim_run`): an unfinished run
  with the same signature is resumed, with its stored snapshot, unless the process that
  owns it is alive (same host: pid and start time; another host: a heartbeat younger
  than :data:`STALE_AFTER_S`), in which case the second process is refused with one line;
* keeps the run's heartbeat fresh while it works;
* marks the run ``interrupted`` on any exception (Ctrl-C, an index outage, a bug) and
  ``done`` through :meth:`ActiveRun.finish`.

:meth:`ActiveRun.probe` is the only way a run probes: a candidate this run already
recorded (a resumed run) is read back from its own rows, never copied again, and an
attempt sequence cut short continues where it stopped. :meth:`ActiveRun.search` drives a
:class:`~envbisect.search.Bisection` seeded (``known=``) with the run's own verdicts, and
stops early when both ends of the range are untestable for the same reason.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psutil

from envbisect import procs
from envbisect.cachemgr import disk_full, sweep
from envbisect.errors import CacheError, DiskFull, EnvbisectError, RecipeError, error_reason
from envbisect.noisy import Sampler
from envbisect.plan import Cutoff, iso, keep_visible
from envbisect.policy import Judgement, Outcome, combine
from envbisect.probekey import ran
from envbisect.recipes import Recipe
from envbisect.requests_model import Judging, exact_names
from envbisect.search import Bisection, SearchResult, Status, Verdict
from envbisect.session import Pending, Probe, Session
from envbisect.records import RunStatus
from envbisect.store import Store

#: A run owned by a process on another host is taken over once its heartbeat is older.
STALE_AFTER_S = 120.0
HEARTBEAT_S = 20.0


def snapshot_now() -> str:
    """The ``--exclude-newer`` instant a new run resolves "latest" under: the next whole
    second in UTC, so a file uploaded in the second the run started is inside it."""
    return iso(datetime.fromtimestamp(int(time.time()) + 1, timezone.utc))


def snapshot_for(candidates) -> str | None:
    """A new run's snapshot: now, when the index gave every candidate an upload time (uv's
    ``--exclude-newer`` drops files without one, so an index that gives none, such as a
    plain HTML mirror, is resolved as of each probe instead)."""
    return snapshot_now() if candidates and all(c.upload_time for c in candidates) else None


def latest_cutoff(snapshot: str | None, requirements: list[str]) -> Cutoff:
    """Resolving "latest" as of ``snapshot`` (``--deps latest``; None: as of now). Packages
    pinned with ``==`` (the candidate, exact ``--with`` pins) are exempt: envbisect listed
    them itself, and a release uploaded within the snapshot's second (or ahead of this
    machine's clock) must stay installable."""
    if snapshot is None:
        return Cutoff()
    return Cutoff(snapshot, keep_visible(exact_names(requirements)))


def this_owner() -> dict:
    """Who works on a run: host name (only to tell whether the pid is ours to check), pid,
    and the process start time (so a recycled pid is not mistaken for the owner)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def owner_alive(run: dict) -> bool:
    """Whether the process recorded as the run's owner still works on it."""
    holder = run.get("owner") or {}
    if holder.get("host") != socket.gethostname():
        beat = run.get("heartbeat")
        return bool(beat) and time.time() - datetime.fromisoformat(beat).timestamp() < STALE_AFTER_S
    try:
        proc = psutil.Process(int(holder.get("pid") or 0))
        return abs(proc.create_time() - float(holder.get("started") or 0)) < 1.0 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


_COMPILE = ("import sys\n"
            "try:\n"
            "    compile(open(sys.argv[1], 'rb').read(), sys.argv[1], 'exec')\n"
            "except SyntaxError as e:\n"
            "    print(e.lineno or 0, type(e).__name__ + ': ' + str(e.msg)); sys.exit(1)\n")


def check_syntax(recipe: Recipe, python: str) -> None:
    """Compile the recipe with the interpreter the envs use (in this process when that is
    the interpreter running envbisect): a syntax error is one line, before any
    environment is built."""
    if os.path.realpath(python) == os.path.realpath(sys.executable) or python == getattr(sys, "_base_executable", ""):
        try:
            compile(recipe.text, str(recipe.path), "exec")
            return
        except SyntaxError as exc:
            message, line = f"{type(exc).__name__}: {exc.msg}", str(exc.lineno or 0)
    else:
        proc = procs.run([python, "-c", _COMPILE, str(recipe.path)], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        line, _, message = proc.stdout.strip().partition(" ")
        message = message or proc.stderr.strip()[-200:]
    where = f" (line {line})" if line.isdigit() and line != "0" else ""
    raise RecipeError(f"recipe {recipe.shown} does not compile{where}: {message}; "
                      "fix the recipe (no environment was built)")


class _Heartbeat:
    """Refreshes a run's heartbeat from a thread with its own store connection."""

    def __init__(self, store: Store, run_id: int) -> None:
        self._stop = threading.Event()
        self._thread = None
        if store.path is not None:
            self._thread = threading.Thread(target=self._beat, args=(store.path, run_id), daemon=True,
                                            name=f"envbisect-heartbeat-{run_id}")
            self._thread.start()

    def _beat(self, path, run_id: int) -> None:
        if self._stop.wait(HEARTBEAT_S):  # a short run never opens a second connection
            return
        with Store(path) as store:
            store.heartbeat(run_id)
            while not self._stop.wait(HEARTBEAT_S):
                store.heartbeat(run_id)

    def stop(self) -> None:
        self._stop.set()


def reason_family(reason: str, label: str) -> str:
    """A reason with the candidate's own name and the measured durations taken out, so
    the same failure on two candidates reads the same."""
    text = re.sub(r"timed out after [\d.]+ s", "timed out", reason)
    if not label:
        return text
    return re.sub(rf"(?<![\w.]){re.escape(label)}(?![\w])", "{candidate}", text)


def fix_for(reason: str) -> str:
    """What to do when every candidate fails the same way."""
    if "timed out" in reason:
        return "the recipe hangs or needs longer: fix it, or raise --timeout"
    if "exit 125" in reason:
        return "the recipe cannot test on this machine (exit 125): run it where its hardware is"
    if reason.startswith("install failed"):
        return "no candidate installs here: check the --with pins, --python and the index"
    if reason.startswith("uncaught"):
        return "the recipe crashes before it tests anything: run `bisect check` on it and fix it"
    return "run `bisect check` on the recipe to see why, and fix it"


@dataclass
class SearchOutcome:
    """A finished (or stopped) search: its answer, what it learned, and why it stopped early."""

    result: SearchResult
    learned: dict[int, Probe] = field(default_factory=dict)
    #: Set when both ends were untestable for the same reason: that reason and the fix.
    stopped: str | None = None
    fix: str | None = None
    #: Rounds of probing (a round probes up to ``--jobs`` candidates at once).
    rounds: int = 0


class ActiveRun:
    """A claimed run: probing through its own memory of what it recorded."""

    def __init__(self, session: Session, row: dict, resumed: bool, recipe: Recipe, judging: Judging) -> None:
        self.session = session
        self.id: int = row["id"]
        self.snapshot: str | None = row.get("snapshot")
        self.resumed = resumed
        self.recipe = recipe
        self.judging = judging
        #: ``--samples auto``: how many samples each probe gets (envbisect.noisy).
        self.sampler = Sampler(judging.sampling, judging.regress) if judging.sampling else None
        self._rows: dict[str, list[dict]] = {}
        for r in session.store.probes_for_run(self.id):
            self._rows.setdefault(r["version"] or "", []).append(r)

    def latest(self, requirements: list[str]) -> Cutoff:
        """The run's snapshot as a resolve cutoff (see :func:`latest_cutoff`)."""
        return latest_cutoff(self.snapshot, requirements)

    def recorded(self, label: str) -> Probe | None:
        """This run's complete record of ``label`` (all attempts, or an install failure)."""
        rows = self._group(label)
        decider = self.sampler.decider(label) if self.sampler is not None else None
        if not rows or (decider is None and len(rows) < self.judging.attempts and ran(rows[0])):
            return None
        if decider is not None and ran(rows[0]):
            if (decided := decider.decide(rows)) is None:
                return None
            verdict, flaky = decided
        else:
            judgements = [self.judging.judge(r) for r in rows] if ran(rows[0]) \
                else [_stored_judgement(rows[0])]
            verdict, flaky = combine(judgements)
        return Probe(label, verdict, flaky, True, 0, rows[0].get("resolved") or {}, rows[0].get("metrics"),
                     rows[0]["seq"], rows[0].get("host"))

    def _group(self, label: str) -> list[dict]:
        rows = self._rows.get(label) or []
        first = rows[0]["seq"] if rows else None
        return [r for r in rows if r["seq"] == first]

    def rows(self, label: str) -> list[dict]:
        """This run's rows for ``label`` (its first attempt sequence)."""
        return list(self._group(label))

    def probe(self, label: str, requirements: list[str], *, package: str | None, cutoff: Cutoff | None = None,
              files: tuple = (), lock=None, knobs: dict[str, str] | None = None) -> Probe:
        """The outcome for ``label``: this run's own record when it has one, else a probe."""
        return self.complete([self.start(label, requirements, package=package, cutoff=cutoff, files=files,
                                         lock=lock, knobs=knobs)])[0]

    def start(self, label: str, requirements: list[str], *, package: str | None, cutoff: Cutoff | None = None,
              files: tuple = (), lock=None, knobs: dict[str, str] | None = None) -> Probe | Pending:
        """Begin learning ``label``: this run's own record when it has one, else
        :meth:`Session.start` (a stored probe with the same key, or a run handed to the
        executor). Finish what is pending with :meth:`complete`."""
        known = self.recorded(label)
        if known is not None:
            self.session.handler.probe_finished(label, known.judgement, True)
            return known
        return self.session.start(self.id, self.recipe, label, requirements, package=package,
                                  judging=self.judging, cutoff=cutoff or self.latest(requirements), files=files,
                                  prior=self._group(label), lock=lock, knobs=knobs,
                                  decider=self.sampler.decider(label) if self.sampler is not None else None)

    def complete(self, begun: list[Probe | Pending]) -> list[Probe]:
        """Wait for what :meth:`start` began (recording as results arrive); probes in order."""
        finished = iter(self.session.wait([b for b in begun if isinstance(b, Pending)]))
        probes = [b if isinstance(b, Probe) else next(finished) for b in begun]
        # New rows: runs that finished, and stored rows a probe copied in (reused samples).
        fresh = [p for b, p in zip(begun, probes) if isinstance(b, Pending) or (p.reused and p.seq is not None)]
        if fresh:
            rows = self.session.store.probes_for_run(self.id)
            for p in fresh:
                self._rows[p.label] = [r for r in rows if r["seq"] == p.seq]
        return probes

    def search(self, search: Bisection, labels: list[str], start_at: Callable[[int], Probe | Pending],
               ahead: Callable[[Bisection, list[int]], None] | None = None, jobs: int = 1) -> SearchOutcome:
        """Drive ``search`` over candidates named ``labels``; ``start_at(i)`` begins probing
        one (:meth:`start`, or a :class:`Probe` already known).

        The run's own records seed the search first (a resumed run asks nothing twice).
        Each round probes up to ``jobs`` candidates at once (``--jobs``: the search's
        multisection splits the window into ``jobs + 1`` parts) and waits for all of them,
        so rounds stay within ``ceil(log_(jobs+1) N) + 2``. When both ends of the range came
        out untestable for the same reason, the search stops with that reason instead of
        walking the candidates in between. ``ahead(search, picks)`` is told each round's
        candidates before they are probed (to build the next round's envs ahead).
        """
        if self.sampler is not None:  # --samples auto: the change-point search instead
            result, learned, rounds = self.sampler.search(self, search, labels, start_at, jobs)
            return SearchOutcome(result, learned, rounds=rounds)
        learned: dict[int, Probe] = {}
        for i, label in enumerate(labels):
            if search.lo <= i <= search.hi and (known := self.recorded(label)) is not None:
                learned[i] = known
                search.record(i, known.judgement.verdict)
        rounds = 0
        while picks := search.next_probes(max(1, jobs)):
            if (stop := self._both_ends_fail(search, labels, learned)) is not None:
                stop.rounds = rounds
                return stop
            rounds += 1
            estimate = len(learned) + len(picks) + search.remaining_estimate
            for n, i in enumerate(picks):
                self.session.handler.probe_started(labels[i], len(learned) + 1 + n, estimate)
            if ahead is not None:
                ahead(search, picks)
            for i, probe in zip(picks, self.complete([start_at(i) for i in picks])):
                learned[i] = probe
                search.record(i, probe.judgement.verdict)
        return SearchOutcome(search.result(), learned, rounds=rounds)

    @staticmethod
    def _both_ends_fail(search: Bisection, labels: list[str], learned: dict[int, Probe]) -> SearchOutcome | None:
        ends = [learned.get(search.lo), learned.get(search.hi)]
        if not search.verify or search.lo == search.hi or None in ends:
            return None
        if any(p.judgement.verdict is not Verdict.UNTESTABLE for p in ends):
            return None
        families = {reason_family(p.judgement.reason, labels[i]) for p, i in zip(ends, (search.lo, search.hi))}
        if len(families) != 1:
            return None
        reason = ends[0].judgement.reason
        result = SearchResult(Status.INCONCLUSIVE, None, None, (), tuple(learned))
        return SearchOutcome(result, learned, stopped=reason, fix=fix_for(reason))

    def finish(self, result: dict) -> dict:
        """Store the result and mark the run done."""
        result.setdefault("run_id", self.id)
        self.session.store.update_run(self.id, status=RunStatus.DONE.value, result=result)
        return result


def _stored_judgement(row: dict) -> Judgement:
    return Judgement(Outcome(row["outcome"]), Verdict(row["verdict"]), row.get("reason") or "")


@contextmanager
def open_run(session: Session, *, kind: str, recipe: Recipe, judging: Judging, signature: str, settings: dict,
             argv: list[str], package: str | None = None, spec: str | None = None,
             snapshot: str | None = None) -> Iterator[ActiveRun]:
    """Claim (resume or create) a run and yield it; see the module docstring.

    ``snapshot`` is the instant "latest" dependencies are resolved as of, for every
    candidate of the run (None: no snapshot, each resolve as of now). A resumed run keeps
    the snapshot it was created with."""
    # What killed runs left behind (scratch directories, half-built environments of dead
    # processes) goes first; a live process's never does (envbisect.procs).
    sweep(session.settings.cache, wait=False)
    check_syntax(recipe, session.interpreter.path)
    row, resumed = session.store.claim_run(
        owner=this_owner(), is_alive=owner_alive, snapshot=snapshot, kind=kind,
        recipe_path=str(recipe.path), recipe_hash=recipe.hash, package=package, spec=spec, signature=signature,
        settings=dict(settings, judging=judging.as_dict()), argv=argv)
    session.store.put_recipe(recipe.hash, recipe.text)  # reports show the exact recipe
    if resumed:
        session.handler.note(f"resuming run {row['id']} (index snapshot {row.get('snapshot')})")
    beat = _Heartbeat(session.store, row["id"])
    try:
        yield ActiveRun(session, row, resumed, recipe, judging)
    except BaseException as exc:
        try:
            session.store.update_run(row["id"], status=RunStatus.INTERRUPTED.value)
        except (EnvbisectError, sqlite3.Error, OSError):
            pass  # a full disk may refuse even this; the run stays resumable as "running" with a dead owner
        if is_disk_full(exc):
            raise disk_full(session.settings.cache, _short(exc)) from None
        raise
    finally:
        beat.stop()


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full: ENOSPC/EDQUOT anywhere, SQLite's "database
    or disk is full", or an installer that said so."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, (sqlite3.OperationalError, CacheError)) and "full" in str(exc)


def _short(exc: BaseException) -> str:
    return error_reason(exc)[:160]
