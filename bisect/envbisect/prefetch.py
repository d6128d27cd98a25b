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

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from envbisect.errors import EnvbisectError
from envbisect.plan import Cutoff, Lock
from envbisect.search import Bisection, Verdict
from envbisect.session import Session

#: What a prefetch needs to know about candidate ``i``: its requirements and resolve cutoff.
Plan = Callable[[int], tuple[list[str], Cutoff]]


class Prefetcher:
    """Builds the envs of the search's possible next candidates in worker threads."""

    def __init__(self, session: Session, limit: int) -> None:
        self.session = session
        self.limit = max(0, limit)
        self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="envbisect-prefetch") if self.limit else None
        self._started: dict[int, Future] = {}

    @property
    def started(self) -> list[int]:
        """Candidates whose builds were started, in order (for tests and progress)."""
        return list(self._started)

    def ahead(self, search: Bisection, probing: int, plan: Plan) -> None:
        """Start building what ``search`` asks next whichever way ``probing`` turns out."""
        if self._pool is None:
            return
        for verdict in (Verdict.GOOD, Verdict.BAD):
            nxt = search.fork(probing, verdict).next_probe()
            if nxt is None or nxt == probing or search.decided(nxt) or nxt in self._started:
                continue
            # The build of the candidate being probed now (or of a decided one) no longer
            # counts against the limit: the probe itself waits for it.
            busy = sum(not f.done() for j, f in self._started.items() if j != probing and not search.decided(j))
            if busy >= self.limit:
                return
            requirements, cutoff = plan(nxt)
            self._started[nxt] = self._pool.submit(self._build, requirements, cutoff)

    def _build(self, requirements: list[str], cutoff: Cutoff) -> bool:
        """Resolve and build one env; True when it exists afterwards."""
        try:
            lock = self.session.planner.lock(requirements, cutoff)
            if isinstance(lock, Lock):
                self.session.envs.ensure(self.session.env_spec(lock))
                return True
        except EnvbisectError:
            pass  # the probe of this candidate meets it again and records it
        return False

    def close(self) -> None:
        """Drop pending builds; running ones finish (their env stays in the cache)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
