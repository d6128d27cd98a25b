"""Build ahead: while a probe runs, the environments the search may ask for next are
resolved and built in the background (real index on 127.0.0.1, real uv, real envs).

The answer and the probe sequence never depend on prefetching; a prefetch is started only
for the candidates the search would ask next either way, never for one already decided.
"""

from __future__ import annotations

from pathlib import Path

from support.cli import PLANTED_BODY, bisect_cli, write_recipe

from envbisect import procs
from envbisect.config import CachePaths, Settings
from envbisect.envs import EnvManager
from envbisect.index import IndexConfig
from envbisect.plan import Cutoff, Lock
from envbisect.prefetch import RANK_NICE, Prefetcher
from envbisect.requests_model import requirements_for
from envbisect.recipes import load_recipe
from envbisect.search import Bisection, Verdict
from envbisect.session import Session
from envbisect.store import Store


def _session(tmp_path: Path, index_url: str, store: Store) -> Session:
    settings = Settings(cache=CachePaths(tmp_path / "cache").ensure(), index=IndexConfig(index_url))
    return Session(settings, store)


def _planted_search(tmp_path: Path, planted_index, store: Store):
    """A session on the planted index, the plan of each candidate, and a search whose ends
    are known (so the candidate it probes now is its first midpoint)."""
    recipe = load_recipe(write_recipe(tmp_path / "r.py", PLANTED_BODY))
    versions = planted_index.installable

    def plan(i: int) -> tuple[list[str], Cutoff]:
        return requirements_for(recipe, [], "planted", versions[i]), Cutoff()

    search = Bisection(len(versions))
    search.record(0, Verdict.GOOD)
    search.record(len(versions) - 1, Verdict.BAD)
    return _session(tmp_path, planted_index.url, store), plan, search


def test_both_possible_next_candidates_are_built_and_no_decided_one(tmp_path, planted_index):
    with Store(None) as store:
        session, plan, search = _planted_search(tmp_path, planted_index, store)
        versions = planted_index.installable
        probing = search.next_probe()
        expected = {search.fork(probing, v).next_probe() for v in (Verdict.GOOD, Verdict.BAD)}
        with Prefetcher(session, 2) as ahead:
            ahead.ahead(search, probing, plan)
            ahead.ahead(search, probing, plan)  # asked twice: started once
            started = ahead.started
            for future in ahead._started.values():
                assert future.result(timeout=120) is True
        assert set(started) == expected and len(started) == 2
        # One outcome after the other in CPU priority: first "the probe is bad", then "good".
        after_bad, after_good = (search.fork(probing, v).next_probe() for v in (Verdict.BAD, Verdict.GOOD))
        assert (ahead._jobs[after_bad].nice, ahead._jobs[after_good].nice) == \
            (procs.BACKGROUND_NICE, procs.BACKGROUND_NICE + RANK_NICE)
        assert not {0, len(versions) - 1, probing} & set(started), "never a decided or running candidate"
        envs = EnvManager(session.settings.cache)
        for i in started:
            lock = session.lock(*plan(i))
            assert isinstance(lock, Lock) and envs.lookup(session.env_spec(lock)) is not None

        with Prefetcher(session, 0) as off:
            off.ahead(search, probing, plan)
            assert off.started == []


def test_builds_ahead_never_outrank_a_needed_build_still_running(tmp_path, planted_index):
    """A round's candidate whose build ahead is still downloading is needed now: the builds
    for the next round start below its priority, in their own rank order (guards: the new
    first-ranked builds got nice 10 and took the CPU from a needed build at nice 13)."""
    with Store(None) as store:
        session, plan, search = _planted_search(tmp_path, planted_index, store)
        probing = search.next_probe()
        planted_index.index.delay_files_s = 120.0  # the builds ahead stay at their download
        try:
            with Prefetcher(session, 2) as ahead:
                ahead.ahead(search, probing, plan)
                after_good = search.fork(probing, Verdict.GOOD).next_probe()
                needed = ahead._jobs[after_good]
                assert needed.nice == procs.BACKGROUND_NICE + RANK_NICE  # the second outcome's
                search.record(probing, Verdict.GOOD)  # so after_good is this round's candidate
                assert not ahead._started[after_good].done()
                ahead.ahead(search, after_good, plan)
                following = [search.fork(after_good, v).next_probe() for v in (Verdict.BAD, Verdict.GOOD)]
                nices = [ahead._jobs[i].nice for i in following if i in ahead._jobs]
                assert len(nices) == 2, following
                assert nices == [needed.nice + 1, min(needed.nice + 1 + RANK_NICE, procs.MAX_NICE)], nices
                for job in list(ahead._jobs.values()):
                    job.cancel()
        finally:
            planted_index.index.release_files()


def test_the_answer_and_probe_sequence_do_not_depend_on_prefetching(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", PLANTED_BODY)

    def run(cache: str, prefetch: str) -> dict:
        proc = bisect_cli("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(tmp_path / cache),
                          "--json", "--prefetch", prefetch, cwd=tmp_path, check_json=True)
        assert proc.returncode == 0, proc.stderr
        return proc.json

    ahead, plain = run("a", "2"), run("b", "0")
    assert [p["version"] for p in ahead["probes"]] == [p["version"] for p in plain["probes"]]
    assert (ahead["last_good"], ahead["first_bad"]) == (plain["last_good"], plain["first_bad"]) == ("1.5", "1.6")
    built = len([p for p in (tmp_path / "a" / "envs").iterdir() if not p.name.startswith(".")])
    assert built >= len(plain["probes"]), "prefetched envs stay in the cache"


def test_a_lock_asked_for_by_two_threads_at_once_is_resolved_once(tmp_path, planted_index):
    """The prefetch thread resolving a round's candidate and the probe asking for the same
    lock share one resolve (the planner waits on the one in flight)."""
    from concurrent.futures import ThreadPoolExecutor

    recipe = load_recipe(write_recipe(tmp_path / "r.py", PLANTED_BODY))
    with Store(None) as store:
        session = _session(tmp_path, planted_index.url, store)
        requirements = requirements_for(recipe, [], "planted", "1.4")
        with ThreadPoolExecutor(4) as pool:
            locks = list(pool.map(lambda _: session.planner.lock(requirements, Cutoff()), range(4)))
        assert all(isinstance(lock, Lock) for lock in locks) and len({lock.text for lock in locks}) == 1
        assert session.planner.resolves == 1


def test_resolves_side_by_side_revalidate_the_page_once(tmp_path, planted_index):
    """Five candidates resolved at once (a round and its builds ahead) on a cold uv cache:
    one resolve revalidates the project page, the others wait for it and read uv's cache
    (guards: resolves side by side each forced a fresh copy, and several fetched the page
    whole)."""
    from concurrent.futures import ThreadPoolExecutor

    recipe = load_recipe(write_recipe(tmp_path / "r.py", PLANTED_BODY))
    versions = planted_index.installable[:5]
    with Store(None) as store:
        session = _session(tmp_path, planted_index.url, store)
        before = len(planted_index.index.log)
        with ThreadPoolExecutor(len(versions)) as pool:
            locks = list(pool.map(lambda v: session.planner.lock(requirements_for(recipe, [], "planted", v)),
                                  versions))
        pages = [hit.status for hit in planted_index.index.log[before:] if hit.path.rstrip("/").endswith("/planted")]
        assert all(isinstance(lock, Lock) for lock in locks)
        assert [dict((p.name, p.version) for p in lock.pins)["planted"] for lock in locks] == list(versions)
        # fetched once; the others only revalidate uv's copy (this index says max-age=0)
        assert sorted(pages) == [200] + [304] * (len(versions) - 1), pages
        assert session.planner.fresh == {"planted"}


def test_a_worker_builds_ahead_in_its_own_cache_and_stops_when_told(tmp_path, planted_index, monkeypatch):
    """The worker's half of build-ahead under Dask (envbisect.remote_ahead), called here as
    Dask's ``client.run`` calls it in a worker process: the build lands in the worker's
    cache; asked twice it is queued once; cancelled mid-download its installer is killed
    and no env (nor half of one) is left."""
    import time

    from envbisect import remote_ahead
    from envbisect.executor import spec_for, worker_workshop
    from envbisect.index import INDEX_VARIABLES
    from envbisect.remote_ahead import build_hint

    for name in INDEX_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVBISECT_CACHE_DIR", str(tmp_path / "worker-cache"))
    recipe = load_recipe(write_recipe(tmp_path / "r.py", PLANTED_BODY))
    with Store(None) as store:
        session = _session(tmp_path, planted_index.url, store)
        hints = [build_hint(session.settings, session.lock(requirements_for(recipe, [], "planted", v), Cutoff()))
                 for v in ("1.3", "1.4")]
    shop = worker_workshop(None, hints[0].index)
    envs_dir = shop.envs.root

    def built(hint) -> bool:
        return shop.envs.lookup(spec_for(shop, hint.lock_text, hint.installer, hint.allow_build)) is not None

    planted_index.index.delay_files_s = 120.0  # a download that would take two minutes
    try:
        assert remote_ahead.start(hints[0]) is True
        assert remote_ahead.start(hints[0]) is False, "already queued: not twice"
        queued = remote_ahead._BUILDS[hints[0].lock_hash]
        deadline = time.monotonic() + 60
        while not list(envs_dir.glob(".tmp-*")):  # the installer is at work
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert remote_ahead.cancel(hints[0].lock_hash, "no-such-lock") == 1
        assert queued.future.result(timeout=60) is False, "killed mid-download: no env"
        assert not built(hints[0]) and not list(envs_dir.glob(".tmp-*"))
    finally:
        planted_index.index.release_files()
    assert remote_ahead.start(hints[1]) is True
    if (queued := remote_ahead._BUILDS.get(hints[1].lock_hash)) is not None:  # None: already done
        assert queued.future.result(timeout=120) is True
    assert built(hints[1])
