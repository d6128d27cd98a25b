"""Probes in parallel (``--jobs``), built ahead (``--prefetch``) and on Dask workers
(``--executor dask``): the answer never depends on how probes ran.

Real parts throughout: one index on 127.0.0.1 and one ``distributed.LocalCluster`` of
three worker processes (each offering ``gpu=1``) shared by the whole module, real uv
installs, real recipes; the workers build envs in their own cache. Nothing of Dask is
mocked.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from support.cli import assert_one_line_error, bisect_cli, cli_env, write_recipe
from support.db import rows
from support.index_server import LocalIndex
from support.wheels import build_wheel

distributed = pytest.importorskip("distributed")

VERSIONS = [f"1.{i}" for i in range(16)]
FIRST_BAD = "1.9"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("par-index")
    idx = LocalIndex(root / "index", flavour="both")
    for v in VERSIONS:
        value = 2 if tuple(map(int, v.split("."))) >= (1, 9) else 1
        idx.add(build_wheel(root / "wheels", "par", v, files={"par/__init__.py": f'__version__ = "{v}"\nVALUE = {value}\n'}))
    idx.start()
    yield idx
    idx.stop()


@contextmanager
def _worker_environ(cache: Path):
    """Workers start with their own cache and no installer settings of this machine."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("UV_", "PIP_", "ENVBISECT_")):
            del os.environ[name]
    os.environ["ENVBISECT_CACHE_DIR"] = str(cache)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cache = tmp_path_factory.mktemp("worker-cache")
    with _worker_environ(cache):
        lc = distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0",
                                      resources={"gpu": 1}, silence_logs=40)
    yield lc
    lc.close()


def _modes(cluster) -> dict[str, tuple[str, ...]]:
    return {"sequential": ("--prefetch", "0"), "prefetch": ("--prefetch", "2"), "jobs3": ("--jobs", "3"),
            "dask3": ("--executor", "dask", "--scheduler", cluster.scheduler_address, "--jobs", "3")}


# Each recipe reads par.VALUE (1: good, 2: bad); PAR_STATE is a directory for markers.
BODIES = {
    "regression": "import sys, par\nsys.exit(0 if par.VALUE == 1 else 1)\n",
    "find-fix": "import sys, par\nsys.exit(1 if par.VALUE == 1 else 0)\n",
    # 1.3, 1.8 and 1.12 cannot be tested (exit 125): 1.8 sits at the boundary.
    "skip": "import sys, par\nif par.__version__ in ('1.3', '1.8', '1.12'):\n    sys.exit(125)\n"
            "sys.exit(0 if par.VALUE == 1 else 1)\n",
    # 1.9's runs disagree (bad, then good): flaky, stepped around like an untestable one.
    "flaky": "import os, sys, par\nif par.__version__ == '1.9':\n"
             "    mark = os.path.join(os.environ['PAR_STATE'], 'ran-1.9')\n"
             "    first = not os.path.exists(mark)\n    open(mark, 'a').close()\n    sys.exit(1 if first else 0)\n"
             "sys.exit(0 if par.VALUE == 1 else 1)\n",
}
EXPECTED = {  # (status, last old, first new, untestable between)
    "regression": ("found", "1.8", "1.9", ()),
    "find-fix": ("found", "1.8", "1.9", ()),
    "skip": ("inconclusive", "1.7", "1.9", ("1.8",)),
    "flaky": ("inconclusive", "1.8", "1.10", ("1.9",)),
}


def _run(tmp: Path, index, body: str, mode_flags: tuple[str, ...], *extra: str, name: str, tool: str = "",
         env: dict | None = None):
    work = tmp / name
    (work / "state").mkdir(parents=True)
    # PAR_STATE is declared: a Dask worker's recipe sees only the declared variables.
    recipe = write_recipe(work / "r.py", body, package="par", deps=("par",),
                          extra_tool="env = [\"PAR_STATE\"]\n" + tool)
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(work / "cache"), "--json",
                      *mode_flags, *extra, cwd=work, env=cli_env(PAR_STATE=str(work / "state"), **(env or {})),
                      timeout=300)
    return proc, work


def _answer(res: dict, find_fix: bool) -> tuple:
    old, new = ("last_bad", "first_good") if find_fix else ("last_good", "first_bad")
    return res["status"], res[old], res[new], tuple(res["untestable_between"])


@pytest.mark.parametrize("pattern", list(BODIES))
def test_every_way_of_running_gives_the_sequential_answer(tmp_path, index, cluster, pattern):
    extra = ("--find-fix",) if pattern == "find-fix" else ()
    extra += ("--retries", "1") if pattern == "flaky" else ()
    modes = _modes(cluster) if pattern == "regression" else \
        {k: v for k, v in _modes(cluster).items() if k != "prefetch"}
    answers = {}
    for mode, flags in modes.items():
        proc, work = _run(tmp_path, index, BODIES[pattern], flags, *extra, name=mode)
        assert proc.returncode in (0, 4), (mode, proc.stderr)
        res = json.loads(proc.stdout)
        answers[mode] = _answer(res, pattern == "find-fix")
        stored = rows(work / "cache" / "results.db")
        pairs = Counter((r["seq"], r["attempt"]) for r in stored)
        assert all(n == 1 for n in pairs.values()), f"{mode}: a probe row recorded twice: {pairs}"
        assert len({r["version"] for r in stored}) == len(res["probes"]), f"{mode}: {stored}"
        attempts = 2 if pattern == "flaky" else 1
        assert len(stored) == attempts * len(res["probes"]), f"{mode}: {stored}"
        if mode in ("jobs3", "dask3"):
            assert res["rounds"] <= math.ceil(math.log(len(VERSIONS), 4)) + 2, res["rounds"]
    assert set(answers.values()) == {EXPECTED[pattern]}, answers


def test_jobs_round_count_and_where_each_probe_ran(tmp_path, index, cluster):
    proc, work = _run(tmp_path, index, BODIES["regression"], _modes(cluster)["dask3"], name="where")
    res = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert res["rounds"] < len(res["probes"]), "three probes per round"
    assert all(p["host"] for p in res["probes"])
    shown = bisect_cli("show", str(res["run_id"]), "--cache-dir", str(work / "cache"), cwd=work)
    assert shown.returncode == 0, shown.stderr
    assert "host A: " in shown.stdout, shown.stdout
    report = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(work / "cache"), cwd=work)
    assert "| host |" in report.stdout and "Host A: " in report.stdout, report.stdout


def _publish_fresh(index, root: Path, package: str) -> None:
    """16 releases of a package no test installed yet: every env it needs is a new one."""
    for v in VERSIONS:
        value = 2 if tuple(map(int, v.split("."))) >= (1, 9) else 1
        index.add(build_wheel(root, package, v, files={f"{package}/__init__.py": f"VALUE = {value}\n"}))


@pytest.mark.parametrize("prefetch", ["2", "0"])
def test_dask_workers_build_the_next_round_ahead(tmp_path, index, cluster, prefetch):
    """With --prefetch, the coordinator resolves the next round's candidates and the
    workers build them while this round's recipes run: a later round's probes find their
    env already built (env_build_s 0); with --prefetch 0 every probe builds its own."""
    package = f"ahead{prefetch}"
    _publish_fresh(index, tmp_path / "wheels", package)
    work = tmp_path / "w"
    work.mkdir()
    body = f"import sys, time, {package} as p\ntime.sleep(1.5)\nsys.exit(0 if p.VALUE == 1 else 1)\n"
    recipe = write_recipe(work / "r.py", body, package=package, deps=(package,))
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(work / "cache"), "--json",
                      *_modes(cluster)["dask3"], "--prefetch", prefetch, cwd=work, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert (res["last_good"], res["first_bad"]) == ("1.8", "1.9")
    stored = rows(work / "cache" / "results.db")
    first_round = {r["version"] for r in stored[:3]}
    later = [r for r in stored if r["version"] not in first_round]
    assert later, stored
    prebuilt = [r["version"] for r in later if not r["env_build_s"]]
    if prefetch == "0":
        assert not prebuilt, f"no env is built ahead with --prefetch 0: {prebuilt}"
    else:
        assert prebuilt, f"no later-round env was built ahead on a worker: {[(r['version'], r['env_build_s']) for r in later]}"


def test_a_resource_no_worker_offers_stops_the_run_with_one_line(tmp_path, index, cluster):
    proc, work = _run(tmp_path, index, BODIES["regression"], _modes(cluster)["dask3"], name="metal",
                      tool="resources = {metal = 1}")
    line = assert_one_line_error(proc, "metal=1", "--resources \"metal=1\"", "dask worker", code=6)
    assert "gpu=1" in line, "says what the connected workers do offer"
    assert not rows(work / "cache" / "results.db"), "nothing recorded"


def test_the_connected_workers_are_seen_while_the_client_refreshes_its_cache(cluster):
    """The workers a probe may go to are asked of the scheduler: the client's own periodic
    refresh (here every millisecond) caches the scheduler's identity without per-worker
    entries, and a run on a full cluster once stopped with "no Dask worker is connected"."""
    from tornado.ioloop import PeriodicCallback

    from envbisect.dask_executor import DaskExecutor

    executor = DaskExecutor(cluster.scheduler_address)
    client = executor.client
    client._periodic_callbacks["scheduler-info"].stop()
    client._periodic_callbacks["scheduler-info"] = refresh = PeriodicCallback(client._update_scheduler_info, 1)
    client.loop.add_callback(refresh.start)
    try:
        seen = [len(executor._workers({"gpu": 1})) for _ in range(1000)]
    finally:
        executor.close()
    assert set(seen) == {3}


def test_no_scheduler_is_one_line(tmp_path, index):
    proc, _ = _run(tmp_path, index, BODIES["regression"], ("--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"),
                   name="nosched")
    assert_one_line_error(proc, "cannot reach the Dask scheduler at tcp://127.0.0.1:9", "dask scheduler", code=6)
    proc, _ = _run(tmp_path, index, BODIES["regression"], ("--executor", "dask"), name="noaddr")
    assert_one_line_error(proc, "--scheduler", "ENVBISECT_SCHEDULER", code=2)
    # A malformed address: one line, exit 2 and no run recorded, where the half-built client
    # used to print a traceback at exit (and hold the exit for 20 s) after claiming a run.
    for address in ("garbage", "http://127.0.0.1:8786"):
        proc, work = _run(tmp_path, index, BODIES["regression"], ("--executor", "dask", "--scheduler", address),
                          name=f"badaddr-{address.partition(':')[0]}")
        assert_one_line_error(proc, f"--scheduler {address} is not a Dask scheduler address", "tcp://HOST:8786",
                              code=2)
        assert not (work / "cache" / "results.db").exists()


EXCLUSIVE_BODY = """
import os, sys, time, par
start = time.time()
time.sleep(0.4)
with open(os.path.join(os.environ["PAR_STATE"], "spans"), "a") as fh:
    fh.write(f"{start} {time.time()}\\n")
sys.exit(0 if par.VALUE == 1 else 1)
"""


@pytest.mark.parametrize("mode", ["jobs3", "dask3"])
def test_an_exclusive_recipe_never_runs_two_probes_at_once(tmp_path, index, cluster, mode):
    tool = "exclusive = true\nresources = {gpu = 1}" if mode == "dask3" else "exclusive = true"
    proc, work = _run(tmp_path, index, EXCLUSIVE_BODY, _modes(cluster)[mode], name=mode, tool=tool)
    assert proc.returncode == 0, proc.stderr
    spans = sorted(tuple(map(float, ln.split())) for ln in (work / "state" / "spans").read_text().splitlines())
    assert len(spans) == len(json.loads(proc.stdout)["probes"]) >= 4
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two exclusive probes overlapped: {spans}"


KILLED_BODY = """
import os, sys, time, par
armed = os.path.join(os.environ["PAR_STATE"], "armed")
if not os.path.exists(armed):  # the first recipe anywhere: tell the test, then wait to be killed
    open(armed, "w").write(str(os.getpid()))
    time.sleep(60)
sys.exit(0 if par.VALUE == 1 else 1)
"""


def test_a_worker_killed_mid_probe_costs_a_retry_not_the_answer(tmp_path, index, cluster):
    state = tmp_path / "killed" / "state"
    killed: list[int] = []

    def killer() -> None:
        armed = state / "armed"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if armed.exists() and armed.read_text().strip():
                worker = psutil.Process(int(armed.read_text())).parent()  # the worker process
                killed.append(worker.pid)
                worker.send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    proc, work = _run(tmp_path, index, KILLED_BODY, _modes(cluster)["dask3"], name="killed")
    thread.join(timeout=5)
    assert killed, "the test never saw the recipe start"
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert (res["last_good"], res["first_bad"]) == ("1.8", "1.9")
    stored = rows(work / "cache" / "results.db")
    assert Counter((r["seq"], r["attempt"]) for r in stored).most_common(1)[0][1] == 1
    assert len(stored) == len(res["probes"])
    cluster.wait_for_workers(3, timeout=60)  # the nanny restarts it for the next tests


def test_a_task_carries_no_secret(tmp_path, index, monkeypatch):
    """What would travel to a worker (the pickled task) holds no index credentials and no
    token, though the coordinator has both; the recipe still runs from it."""
    import pickle

    from envbisect.config import CachePaths, Settings
    from envbisect.executor import LocalExecutor
    from envbisect.index import IndexConfig
    from envbisect.plan import Cutoff
    from envbisect.recipes import load_recipe
    from envbisect.remote_ahead import build_hint
    from envbisect.requests_model import Judging
    from envbisect.session import Session
    from envbisect.store import Store

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_tokenvalue123456")
    url = index.url.replace("http://", "http://alice:s3cr3tpass@")
    sent: list[bytes] = []

    class Capturing(LocalExecutor):
        def submit(self, task):
            sent.append(pickle.dumps(task))
            return super().submit(task)

    recipe = load_recipe(write_recipe(tmp_path / "r.py", BODIES["regression"], package="par", deps=("par",)))
    settings = Settings(cache=CachePaths(tmp_path / "cache").ensure(), index=IndexConfig(url))
    with Store(tmp_path / "cache" / "results.db") as store, Session(settings, store) as session:
        session._executor = Capturing(session.executor.shop)
        run_id = store.create_run(kind="check", recipe_path=str(recipe.path), recipe_hash=recipe.hash, package="par",
                                  spec=None, signature="secret-test", settings={}, argv=[])
        probe = session.probe(run_id, recipe, "1.2", ["par==1.2"], package="par", judging=Judging(60))
        # What a worker is asked to build ahead (--prefetch under Dask) carries none either.
        sent.append(pickle.dumps(build_hint(settings, session.lock(["par==1.3"], Cutoff()))))
    assert probe.judgement.verdict.value == "good" and len(sent) == 2
    for blob in sent:
        assert b"s3cr3tpass" not in blob and b"alice" not in blob and b"ghp_tokenvalue" not in blob
        assert b"results.db" not in blob


# Three outputs; only logits changes at 1.9 (by 1e-3). Before that its bytes differ from
# 1.0's by 1e-9 relative: every good candidate needs a real comparison with 1.0's file.
REFERENCE_BODY = """
import json, os, pathlib, par
out = pathlib.Path(os.environ["ENVBISECT_OUTPUTS"])
minor = int(par.__version__.split(".")[1])
scale = 1 + 1e-9 * minor if par.VALUE == 1 else 1.001
(out / "logits.json").write_text(json.dumps([0.5 * scale, 2.0 * scale]))
(out / "loss.json").write_text(json.dumps(3.25))
(out / "labels.json").write_text(json.dumps([[1, 2], [3, 4]]))
"""


def _stored_hashes(db: Path) -> set[str]:
    return {e["hash"] for r in rows(db) if r["outputs"] for e in json.loads(r["outputs"]).values()}


def _worker_caches(cluster) -> set[Path]:
    """Each worker's cache directory (a worker the nanny restarted may use another one)."""
    from envbisect.config import default_cache_dir

    with distributed.Client(cluster) as client:
        return {Path(p) for p in client.run(lambda: str(default_cache_dir().absolute())).values()}


def test_a_reference_run_on_dask_workers_answers_as_the_local_one(tmp_path, index, cluster):
    """--diverge-from under --executor dask: the reference's files travel to the workers
    (whose cache lacks them), the workers' outputs come back to the coordinator's cache."""
    import shutil

    local, _ = _run(tmp_path, index, REFERENCE_BODY, _modes(cluster)["sequential"], "--diverge-from", "1.0",
                    name="ref-local")
    assert local.returncode == 0, local.stderr
    # The coordinator runs 1.0 (and 1.1) itself first, so only its cache has 1.0's files ...
    first, work = _run(tmp_path, index, REFERENCE_BODY, _modes(cluster)["sequential"], "--good", "1.0",
                       "--bad", "1.1", name="ref-dask")
    assert first.returncode == 3, first.stderr
    caches = _worker_caches(cluster)
    for cache in caches:  # ... and no worker has any
        shutil.rmtree(cache / "outputs", ignore_errors=True)
    recipe = work / "r.py"
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(work / "cache"), "--json",
                      "--diverge-from", "1.0", *_modes(cluster)["dask3"], cwd=work,
                      env=cli_env(PAR_STATE=str(work / "state")), check_json=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res, loc = proc.json, json.loads(local.stdout)
    assert _answer(res, False) == _answer(loc, False) == EXPECTED["regression"]
    assert res["diverged_outputs"] == loc["diverged_outputs"] == ["logits"]
    compared = [p for p in res["probes"] if p["version"] != "1.0" and p["verdict"] == "good" and not p["reused"]]
    assert compared, f"no good candidate was compared with 1.0 on a worker: {res['probes']}"
    assert res["executed"] >= 4 and all(p["host"] for p in res["probes"])
    ref_logits = res["reference"]["outputs"]["logits"]["hash"]
    assert any((c / "outputs" / ref_logits[:2] / ref_logits).is_file() for c in caches), "shipped to the workers"
    db = work / "cache" / "results.db"
    stored = _stored_hashes(db)
    held = {p.name for p in (work / "cache" / "outputs").glob("??/*")}
    assert stored and stored == held, f"outputs a worker wrote are missing here: {stored - held}"
    info = json.loads(bisect_cli("cache", "info", "--json", "--cache-dir", str(work / "cache"), cwd=work).stdout)
    assert info["outputs"] == len(held), info
    # A looser tolerance re-judges on the coordinator from what came back, running nothing
    # (over the range the parallel run probed: it never needed its bad end, 1.15).
    loose = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(work / "cache"), "--json",
                       "--diverge-from", "1.0", "--rtol", "1e-2", "--bad", res["first_bad"], cwd=work, env=cli_env(PAR_STATE=str(work / "state")),
                       check_json=True, timeout=300)
    assert loose.returncode == 3 and loose.json["executed"] == 0, loose.stderr
    # With a fresh cache the reference itself runs on a worker: its files come back first.
    fresh, work = _run(tmp_path, index, REFERENCE_BODY, _modes(cluster)["dask3"], "--diverge-from", "1.0",
                       name="ref-dask-fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert _answer(json.loads(fresh.stdout), False) == EXPECTED["regression"]
    assert _stored_hashes(work / "cache" / "results.db") == {p.name for p in (work / "cache" / "outputs").glob("??/*")}


def test_the_coordinator_killed_with_sigkill_resumes(tmp_path, index, cluster):
    import subprocess
    import sys

    work = tmp_path / "resume"
    (work / "state").mkdir(parents=True)
    body = "import sys, time, par\ntime.sleep(1)\nsys.exit(0 if par.VALUE == 1 else 1)\n"
    recipe = write_recipe(work / "r.py", body, package="par", deps=("par",))
    argv = ["run", str(recipe), "--index-url", index.url, "--cache-dir", str(work / "cache"), "--json",
            *_modes(cluster)["dask3"]]
    proc = subprocess.Popen([sys.executable, "-m", "envbisect", *argv], cwd=work, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = work / "cache" / "results.db"
    deadline = time.monotonic() + 120
    while not (db.exists() and len(rows(db)) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = rows(db)
    again = bisect_cli(*argv, cwd=work, check_json=True, timeout=300)
    assert again.returncode == 0, again.stderr
    res = again.json
    assert (res["last_good"], res["first_bad"]) == ("1.8", "1.9")
    after = rows(db)
    assert {r["run_id"] for r in after} == {res["run_id"]} == {before[0]["run_id"]}, "resumed, not restarted"
    assert Counter(r["version"] for r in after).most_common(1)[0][1] == 1, after
    assert {r["id"] for r in before} <= {r["id"] for r in after}
