"""Build ahead: while a probe runs, resolve and build the environments the search may ask
for next (the next candidate if the running one turns out good, and if it turns out bad),
as mozregression downloads both halves' builds.

Execution layer: it decides nothing about the answer and records nothing. A prefetched
environment lands in the content-addressed cache, so the probe that needs it finds it
ready (or waits on its per-key build lock while it finishes); one that is never needed
stays in the cache for later runs. A prefetch never blocks a probe, is never started for a
candidate already decided, and its failures are silent: the probe of that candidate meets
the same failure itself and records it. At most ``limit`` builds run at once (``--prefetch
N``, 0 turns it off); when the search ends, pending builds are dropped and running ones
finish in the background of the next probe or at exit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext

from envbisect import procs
from envbisect.errors import EnvbisectError
from envbisect.plan import Cutoff, Lock
from envbisect.remote_ahead import build_hint
from envbisect.search import Bisection, Verdict
from envbisect.session import Session


#: The longest a build ahead waits for this round's recipes to start
#: (:class:`envbisect.executor.Launches`): a probe waiting on another's host lock, or one a
#: stored verdict settled, holds the builds back no longer than this.
LAUNCH_WAIT_S = 0.5


#: How much lower each later outcome's builds run than the one before (nice increments
#: on top of :data:`envbisect.procs.BACKGROUND_NICE`, up to 19): a ``--jobs 3`` round builds
#: a dozen envs ahead, three for each of its four outcomes, and exactly one outcome's are
#: needed. Sharing two cores equally, all twelve finish last together; ranked, the first
#: outcomes' builds finish sooner and the last no later, so the round that follows waits
#: less on average (bench_parallel, N = 256: about 0.1 s a run).
RANK_NICE = 3


def prefetch_limit(settings) -> int:
    """How many envs to build at once ahead of the search: ``--prefetch N`` covers N of the
    two possible next candidates of a one-probe round, and scales with ``--jobs k`` to
    ``N * k * (k + 1) / 2`` (the default 2 covers all ``k + 1`` possible next rounds of
    ``k`` candidates each). With ``--executor dask`` the coordinator resolves them and the
    workers build them (:mod:`envbisect.remote_ahead`)."""
    if settings.prefetch <= 0:
        return 0
    return settings.prefetch * settings.jobs * (settings.jobs + 1) // 2  # k(k+1) is even


def _outcomes(search: Bisection, picks: list[int]) -> list[Bisection]:
    """The searches that follow ``picks``: the ``len(picks) + 1`` outcomes with one change
    among them (for one pick: old or new), middle ones first."""
    old, new = (Verdict.BAD, Verdict.GOOD) if search.find_fix else (Verdict.GOOD, Verdict.BAD)
    splits = sorted(range(len(picks) + 1), key=lambda j: abs(2 * j - len(picks)))
    twins = []
    for j in splits:
        twin = search
        for n, i in enumerate(picks):
            twin = twin.fork(i, old if n < j else new)
        twins.append(twin)
    return twins


#: What a prefetch needs to know about candidate ``i``: its requirements and resolve cutoff.
Plan = Callable[[int], tuple[list[str], Cutoff]]


class Prefetcher:
    """Builds the envs of the search's possible next candidates in worker threads."""

    def __init__(self, session: Session, limit: int, jobs: int = 1, *,
                 resources: dict[str, float] | None = None) -> None:
        self.session = session
        self.limit = max(0, limit)
        self.jobs = max(1, jobs)
        self._pool = ThreadPoolExecutor(self.limit + self.jobs, thread_name_prefix="envbisect-prefetch") if self.limit else None
        self._started: dict[int, Future] = {}
        self._jobs: dict[int, procs.Background] = {}
        #: Where envs are built: here, or (``--executor dask``) on the workers, with the
        #: resources the recipe declares (they say which workers could run its probes).
        self._remote = getattr(session.executor, "build_ahead", None) if self.limit else None
        self._resources = dict(resources or {})
        self._sent: dict[int, str] = {}  # candidate -> lock hash a worker builds ahead

    @property
    def started(self) -> list[int]:
        """Candidates whose builds were started ahead of their round, in order (for tests
        and progress; the builds of a round's own candidates are not counted)."""
        return [i for i in self._started if i in self._jobs]

    def ahead(self, search: Bisection, probing: int | list[int], plan: Plan) -> None:
        """Start building the candidates being probed now, then what ``search`` asks next
        however they turn out: for one candidate, good or bad (as mozregression fetches both
        halves); for a round of several (``--jobs``), each outcome consistent with one
        change in the range (the first ``j`` of them old and the rest new, the middle
        outcomes first), each outcome's whole next round, each outcome's builds at a lower
        CPU priority than the one before (:data:`RANK_NICE`), all of them below this
        round's own builds still running ahead (:meth:`_floor`)."""
        if self._pool is None:
            return
        picks = [probing] if isinstance(probing, int) else sorted(probing)
        live = {j for j in self._started if j not in picks and search.open(j)}
        self._drop_unneeded(picks, live)
        # This round's own candidates first, side by side: their probes start one after
        # another and would otherwise resolve and build one after another (the planner and
        # the per-key build lock make each probe wait for its build here instead).
        for i in picks:
            if i not in self._started and not search.decided(i):
                self._started[i] = self._pool.submit(self._build, *plan(i))
        # Builds for later rounds start once this round's probes were handed over and none is
        # about to start its recipe: a dozen installers starting beside a round's recipes
        # slowed each --jobs 3 round by about 0.1 s on two cores (bench_parallel).
        launches = getattr(self.session.executor, "launches", None)
        after = None if launches is None else functools.partial(
            launches.wait, launches.expect(sum(not search.decided(i) for i in picks)), LAUNCH_WAIT_S)
        # candidate -> (its place in its round: which worker builds it; its outcome's rank)
        wanted: dict[int, tuple[int, int]] = {}
        for rank, twin in enumerate(_outcomes(search, picks)):
            for slot, nxt in enumerate(twin.next_probes(self.jobs)):
                if nxt not in picks and nxt not in wanted and not search.decided(nxt):
                    wanted[nxt] = slot, rank
        # The builds of candidates being probed now no longer count against the limit (the
        # probes themselves wait for them), nor do those the search left behind.
        busy = sum(not self._started[j].done() for j in live)
        floor = self._floor(picks)
        for nxt, (slot, rank) in wanted.items():
            if nxt in self._started:
                continue
            if busy >= self.limit:
                return
            self._jobs[nxt] = job = procs.Background(floor + RANK_NICE * rank)
            self._started[nxt] = self._pool.submit(self._build, *plan(nxt), job, (nxt, slot), after)
            busy += 1

    def _floor(self, picks: list[int]) -> int:
        """Where the next builds' nice increments start: above every build of this round's
        candidates that is still running as a build ahead, since those are now needed (an
        unprivileged process cannot raise their priority, so the new ones go below them).
        Without it the first outcomes' new builds outranked a round's own third-ranked
        builds still downloading (paired, bench_parallel N = 256: --jobs 3 0.10 s a run
        faster, the default 0.13 s)."""
        running = [self._jobs[i].nice for i in picks if i in self._jobs and not self._started[i].done()]
        return max(0, max(running) + 1 - procs.BACKGROUND_NICE) if running else 0

    def _build(self, requirements: list[str], cutoff: Cutoff, job: procs.Background | None = None,
               ahead_of: tuple[int, int] | None = None, after: Callable[[], object] | None = None) -> bool:
        """Resolve and build one env; True when it exists afterwards (or a worker was asked
        to build it). A build for a later round (``ahead_of``: that candidate and its place
        in its round) runs as a background ``job``: its resolver and installer take only the
        CPU the running probes (and this round's own builds) leave, and it is killed once
        the search will no longer ask for its candidate. Under ``--executor dask`` the env
        is only resolved here, and a later round's is built by the worker its place in the
        round names (a round's candidates go to distinct workers); a round's own are built
        by their probes. ``after`` is waited for first (:class:`envbisect.executor.Launches`)."""
        try:
            if after is not None:
                after()
            with job.running() if job is not None else nullcontext():
                lock = self.session.planner.lock(requirements, cutoff)
                if not isinstance(lock, Lock) or (job is not None and job.cancelled):
                    return False
                if self._remote is None:
                    self.session.envs.ensure(self.session.env_spec(lock))
                    return True
        except EnvbisectError:
            return False  # the probe of this candidate meets it again and records it
        return ahead_of is None or self._send(lock, *ahead_of)

    def _send(self, lock: Lock, candidate: int, slot: int) -> bool:
        """Ask a worker to build ``lock`` ahead (best effort: a worker or scheduler that
        went away costs nothing but the head start; the probe goes elsewhere)."""
        try:
            self._remote(build_hint(self.session.settings, lock), self._resources, slot)
        except Exception:  # noqa: BLE001
            return False
        self._sent[candidate] = lock.hash
        return True

    def _drop_unneeded(self, picks: list[int], live: set[int]) -> None:
        """Stop the builds of candidates the search will no longer ask for (neither being
        probed nor ``live``: decided, or outside its window): queued ones never start,
        running ones are killed (their half-built env is removed, never used)."""
        for i, future in self._started.items():
            if i not in picks and i not in live and not future.done():
                future.cancel()
                if (job := self._jobs.get(i)) is not None:
                    job.cancel()
        self._drop_remote([i for i in list(self._sent) if i not in picks and i not in live])

    def _drop_remote(self, candidates: list[int]) -> None:
        """Tell the workers building these candidates' envs ahead to stop (best effort)."""
        hashes = [h for i in candidates if (h := self._sent.pop(i, None)) is not None]
        if not hashes:
            return
        try:
            self.session.executor.drop_ahead(*hashes)
        except Exception:  # noqa: BLE001 - a worker or scheduler that went away has nothing to stop
            pass

    def close(self) -> None:
        """Drop pending builds; running ones here finish (their env stays in the cache), and
        the workers stop those they build ahead (the search asks for nothing more)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._drop_remote(list(self._sent))

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def search_ahead(session: Session, run, search: Bisection, labels: list[str],
                 start_at: Callable[[int], object], plan: Plan, resources: dict[str, float]):
    """Drive ``search`` (:meth:`envbisect.driver.ActiveRun.search`) with this session's
    ``--jobs``, building ahead as ``--prefetch`` says what each round may ask for next."""
    jobs = session.settings.jobs
    with Prefetcher(session, prefetch_limit(session.settings), jobs, resources=resources) as ahead:
        return run.search(search, labels, start_at, lambda s, i: ahead.ahead(s, i, plan), jobs=jobs)
