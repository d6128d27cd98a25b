"""Unit tests for the results store: schema, round-trips, reuse rules, migrations.

In-memory stores, and real SQLite files under tmp_path where a file is the point
(WAL, reopening, migrating an old file). No subprocess here.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from envbisect.errors import AlreadyRunning, CacheError, RunNotFound
from envbisect.search import Verdict
from envbisect.records import RunKind
from envbisect.store import SCHEMA_VERSION, Store


def _run(store: Store, signature: str = "sig-a", **overrides) -> int:
    args = dict(
        kind="bisect", recipe_path="recipes/r.py", recipe_hash="rh", package="pkg",
        spec=">=1.0", signature=signature, settings={"timeout": 60, "regress": "bad"},
        argv=["bisect", "run", "recipes/r.py"],
    )
    args.update(overrides)
    return store.create_run(**args)


@pytest.fixture
def store() -> Store:
    with Store(None) as s:
        yield s


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


# -- runs -------------------------------------------------------------------------


def test_create_and_get_run_round_trips_every_field(store: Store) -> None:
    run_id = _run(store, kind=RunKind.CHECK)
    run = store.get_run(run_id)
    assert run["id"] == run_id
    assert run["kind"] == "check"
    assert run["recipe_path"] == "recipes/r.py"
    assert run["package"] == "pkg" and run["spec"] == ">=1.0"
    assert run["settings"] == {"timeout": 60, "regress": "bad"}
    assert run["argv"] == ["bisect", "run", "recipes/r.py"]
    assert run["status"] == "running"
    assert run["result"] is None and run["finished_at"] is None
    assert run["started_at"].endswith("+00:00")
    assert set(run["host"]) == {"os", "machine", "python"}
    assert run["envbisect_version"]


def test_create_run_rejects_unknown_kind(store: Store) -> None:
    with pytest.raises(ValueError):
        _run(store, kind="bisekt")


def test_list_runs_newest_first_with_probe_counts(store: Store) -> None:
    assert store.list_runs() == []
    assert store.latest_run_id() is None
    first, second, third = _run(store), _run(store), _run(store)
    for _ in range(3):
        store.add_probe(first, outcome="good")
    store.add_probe(third, outcome="bad")
    runs = store.list_runs()
    assert [r["id"] for r in runs] == [third, second, first]
    assert [r["probe_count"] for r in runs] == [1, 0, 3]
    assert runs[0]["settings"] == {"timeout": 60, "regress": "bad"}  # decoded here too
    assert [r["id"] for r in store.list_runs(limit=2)] == [third, second]
    assert store.latest_run_id() == third


def test_update_run_stamps_finished_at_only_for_terminal_statuses(store: Store) -> None:
    run_id = _run(store)
    store.update_run(run_id, status="interrupted")
    assert store.get_run(run_id)["finished_at"] is None
    store.update_run(run_id, status="done", result={"first_bad": "2.0", "last_good": "1.9"})
    run = store.get_run(run_id)
    assert run["status"] == "done" and run["finished_at"] is not None
    assert run["result"] == {"first_bad": "2.0", "last_good": "1.9"}
    # Resuming clears finished_at; result=None keeps the stored result.
    store.update_run(run_id, status="running")
    run = store.get_run(run_id)
    assert run["finished_at"] is None
    assert run["result"] == {"first_bad": "2.0", "last_good": "1.9"}
    store.update_run(run_id, status="failed")
    assert store.get_run(run_id)["finished_at"] is not None


def test_update_run_rejects_unknown_status_and_unknown_run(store: Store) -> None:
    run_id = _run(store)
    with pytest.raises(ValueError):
        store.update_run(run_id, status="finished")
    with pytest.raises(RunNotFound):
        store.update_run(run_id + 1, status="done")
    assert store.get_run(run_id)["status"] == "running"


def test_get_run_not_found_message_names_db_and_fix(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    with Store(db) as s:
        with pytest.raises(RunNotFound) as info:
            s.get_run(42)
    assert str(info.value) == f"no run 42 in {db}; list runs with `bisect history`"


def test_find_resumable_run(store: Store) -> None:
    assert store.find_resumable_run("sig-a") is None
    old = _run(store)
    new = _run(store)
    other = _run(store, signature="sig-b")
    assert store.find_resumable_run("sig-a")["id"] == new
    store.update_run(new, status="done")
    assert store.find_resumable_run("sig-a")["id"] == old
    store.update_run(old, status="interrupted")
    assert store.find_resumable_run("sig-a")["id"] == old
    store.update_run(old, status="failed")
    assert store.find_resumable_run("sig-a") is None
    assert store.find_resumable_run("sig-b")["id"] == other


# -- probes -----------------------------------------------------------------------


def test_probe_round_trip_with_json_columns(store: Store) -> None:
    run_id = _run(store)
    probe_id = store.add_probe(
        run_id, recipe_hash="rh", env_key="ek", host="linux-x86_64", package="pkg",
        version="1.2", requirements=["pkg==1.2", "numpy"],
        resolved={"pkg": "1.2", "numpy": "2.0.1"},
        exit_code=1, signal=None, timed_out=False, outcome="bad", verdict=Verdict.BAD,
        reason="exit 1", metrics={"max_abs_diff": 41.7, "device": "GPU:0"},
        metrics_note=None, duration_s=1.25, env_build_s=3.5, stdout_tail="out",
        stderr_tail="err", log_path=Path("/tmp/log.txt"), flaky=True,
    )
    (probe,) = store.probes_for_run(run_id)
    assert probe["id"] == probe_id and probe["run_id"] == run_id
    assert probe["requirements"] == ["pkg==1.2", "numpy"]
    assert probe["resolved"] == {"pkg": "1.2", "numpy": "2.0.1"}
    assert probe["metrics"] == {"max_abs_diff": 41.7, "device": "GPU:0"}
    assert probe["verdict"] == "bad"  # enum stored as its value
    assert probe["timed_out"] is False and probe["flaky"] is True
    assert probe["log_path"] == "/tmp/log.txt"
    assert probe["exit_code"] == 1 and probe["signal"] is None
    assert probe["duration_s"] == 1.25 and probe["env_build_s"] == 3.5
    assert probe["seq"] == 1 and probe["attempt"] == 1
    assert probe["reused_from"] is None and probe["created_at"]


def test_probes_in_insertion_order_with_per_run_seq(store: Store) -> None:
    a, b = _run(store), _run(store)
    store.add_probe(a, version="1")
    store.add_probe(b, version="x")
    store.add_probe(a, version="2")
    store.add_probe(a, version="2", seq=2, attempt=2)  # a retry keeps its seq
    store.add_probe(a, version="3")
    rows = store.probes_for_run(a)
    assert [(r["version"], r["seq"], r["attempt"]) for r in rows] == [
        ("1", 1, 1), ("2", 2, 1), ("2", 2, 2), ("3", 3, 1),
    ]
    assert [r["seq"] for r in store.probes_for_run(b)] == [1]


def test_add_probe_rejects_unknown_fields_and_runs(store: Store) -> None:
    run_id = _run(store)
    with pytest.raises(TypeError, match="outcom"):
        store.add_probe(run_id, outcom="good")
    with pytest.raises(RunNotFound):
        store.add_probe(run_id + 7, outcome="good")
    assert store.probes_for_run(run_id) == []


def test_find_reusable_rules(store: Store) -> None:
    run_id = _run(store)
    assert store.find_reusable("k1") == []
    store.add_probe(run_id, probe_key="k1", outcome=None, reason="killed before judging")
    assert store.find_reusable("k1") == []
    old = store.add_probe(run_id, probe_key="k1", outcome="good")
    new = store.add_probe(run_id, probe_key="k1", outcome="bad")
    store.add_probe(run_id, probe_key="k1", outcome="good", reused_from=old)  # a copy, never reused
    store.add_probe(run_id, probe_key="k1", outcome=None)
    assert [r["id"] for r in store.find_reusable("k1")] == [new, old]
    assert store.find_reusable("k2") == []
    # A row written before probe keys existed (no probe_key) is never reused.
    store.add_probe(run_id, recipe_hash="rh", env_key="ek", host="h1", outcome="good")
    assert [r["id"] for r in store.find_reusable("k1")] == [new, old]


def test_find_reusable_searches_across_runs(store: Store) -> None:
    first = store.add_probe(_run(store), probe_key="k", outcome="good", metrics={"d": 0.0},
                            env_values={"ADDMM_RTOL": "1e-3"}, fingerprint={"os": "Linux"})
    found = store.find_reusable("k")[0]
    assert found["id"] == first and found["metrics"] == {"d": 0.0}
    assert found["env_values"] == {"ADDMM_RTOL": "1e-3"} and found["fingerprint"] == {"os": "Linux"}


def test_record_probe_assigns_seq_inside_the_write_and_keeps_it_for_later_attempts(store: Store) -> None:
    run_id = _run(store)
    first_id, seq = store.record_probe(run_id, attempt=0, outcome="good")
    _, same = store.record_probe(run_id, seq=seq, attempt=1, outcome="good")
    _, following = store.record_probe(run_id, attempt=0, outcome="bad")
    assert (seq, same, following) == (1, 1, 2)
    assert [(r["seq"], r["attempt"]) for r in store.probes_for_run(run_id)] == [(1, 0), (1, 1), (2, 0)]


def _claim(store: Store, alive: bool, signature: str = "sig") -> tuple[dict, bool]:
    return store.claim_run(owner={"host": "h", "pid": 1}, is_alive=lambda run: alive, snapshot="2026-01-01T00:00:00Z",
                           kind="bisect", recipe_path="r.py", recipe_hash="rh", package="p", spec=None,
                           signature=signature, settings={}, argv=[])


def test_claim_run_resumes_a_dead_owner_and_refuses_a_live_one(store: Store) -> None:
    run, resumed = _claim(store, alive=False)
    assert not resumed and run["snapshot"] == "2026-01-01T00:00:00Z" and run["owner"]["pid"] == 1
    with pytest.raises(AlreadyRunning, match=f"run {run['id']} asks the same question"):
        _claim(store, alive=True)
    again, resumed = _claim(store, alive=False)
    assert resumed and again["id"] == run["id"] and again["snapshot"] == run["snapshot"]
    store.update_run(run["id"], status="done")
    fresh, resumed = _claim(store, alive=True)
    assert not resumed and fresh["id"] != run["id"]


def test_an_interrupted_run_is_resumed_whatever_its_owner(store: Store) -> None:
    run, _ = _claim(store, alive=False)
    store.update_run(run["id"], status="interrupted")
    again, resumed = _claim(store, alive=True)
    assert resumed and again["id"] == run["id"] and again["status"] == "running"


def test_locks_are_kept_once_by_hash(store: Store) -> None:
    assert store.get_lock("abc") is None
    store.put_lock("abc", "lock-version = '1.0'")
    store.put_lock("abc", "something else")
    assert store.get_lock("abc") == "lock-version = '1.0'"


def test_mark_flaky_flags_every_attempt_of_one_probe(store: Store) -> None:
    run_id, other = _run(store), _run(store)
    for attempt in range(2):
        store.add_probe(run_id, seq=3, attempt=attempt, outcome="good")
    store.add_probe(run_id, seq=4, outcome="good")
    store.add_probe(other, seq=3, outcome="good")
    assert store.mark_flaky(run_id, 3) == 2
    assert [(r["seq"], r["flaky"]) for r in store.probes_for_run(run_id)] == [
        (3, True), (3, True), (4, False),
    ]
    assert store.probes_for_run(other)[0]["flaky"] is False


# -- watches and attachments ------------------------------------------------------


def test_upsert_watch_creates_then_merges(store: Store) -> None:
    assert store.get_watch("tf-metal") is None
    store.upsert_watch("tf-metal", recipe="r.py", package="tensorflow-metal", state={"n": 1})
    store.upsert_watch("tf-metal", etag='"abc"', last_seen="1.1.0")
    watch = store.get_watch("tf-metal")
    assert watch["recipe"] == "r.py" and watch["package"] == "tensorflow-metal"
    assert watch["etag"] == '"abc"' and watch["last_seen"] == "1.1.0"
    assert watch["state"] == {"n": 1}
    with pytest.raises(TypeError):
        store.upsert_watch("tf-metal", tag="x")


def test_attachments(store: Store) -> None:
    run_id, other = _run(store), _run(store)
    first = store.add_attachment(run_id, "o/r#1", "https://example.invalid/c/1", "h1")
    second = store.add_attachment(run_id, "o/r#2", "https://example.invalid/c/2", "h2")
    store.add_attachment(other, "o/r#3", "https://example.invalid/c/3", "h3")
    rows = store.attachments_for_run(run_id)
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["issue"] == "o/r#1" and rows[0]["body_hash"] == "h1"
    with pytest.raises(RunNotFound):
        store.add_attachment(999, "o/r#1", "u", "h")


# -- files, migrations, failures --------------------------------------------------


def test_file_store_uses_wal_and_creates_parent_dirs(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "cache" / "results.db"
    with Store(db):
        pass
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_reopen_keeps_data_and_does_not_rerun_migrations(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    with Store(db) as s:
        run_id = _run(s)
        s.add_probe(run_id, outcome="good", metrics={"d": 1})
    assert _user_version(db) == SCHEMA_VERSION
    # Migration 1 creates tables without IF NOT EXISTS: running it again would raise.
    with Store(db) as s:
        assert s.get_run(run_id)["settings"] == {"timeout": 60, "regress": "bad"}
        assert s.probes_for_run(run_id)[0]["metrics"] == {"d": 1}
    assert _user_version(db) == SCHEMA_VERSION


@pytest.mark.parametrize("how", ["empty-file", "sqlite-v0"])
def test_old_version_file_is_migrated(tmp_path: Path, how: str) -> None:
    db = tmp_path / "results.db"
    if how == "empty-file":
        db.write_bytes(b"")
    else:
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA user_version = 0")
        conn.execute("VACUUM")  # forces a real database header onto disk
        conn.close()
        assert db.stat().st_size > 0
    assert _user_version(db) == 0
    with Store(db) as s:
        assert s.get_run(_run(s))["status"] == "running"
    assert _user_version(db) == SCHEMA_VERSION


def test_a_schema_2_watch_keeps_its_row_and_gains_a_release_set(tmp_path: Path) -> None:
    from sqlite_utils import Database

    from envbisect.store import MIGRATIONS

    db = tmp_path / "results.db"
    old = Database(db)
    for migration in MIGRATIONS[:2]:
        migration(old)
    old["watches"].insert({"name": "w", "last_seen": "1.8", "state": '{"known": null}'})
    old.execute("PRAGMA user_version = 2")
    old.close()
    with Store(db) as s:
        row = s.get_watch("w")
        assert row["last_seen"] == "1.8" and row["next_check"] is None and row["failures"] is None
        assert s.watch_releases("w") == {}
        s.save_check("w", {"1.9": ("bad", None)}, failures=0)
        assert s.watch_releases("w")["1.9"]["verdict"] == "bad" and s.get_watch("w")["failures"] == 0
    assert _user_version(db) == SCHEMA_VERSION


def test_raw_text_stored_by_older_versions_is_made_printable_once(tmp_path: Path) -> None:
    """Tails, reasons and metric names and strings stored before they were kept printable
    at capture: shown, their escape sequences would act on the terminal; judged again, a
    signature would meet them raw. Migrated as a run captures them today; a row that was
    printable already is left as it was (a NaN metric included)."""
    from sqlite_utils import Database

    from envbisect.store import MIGRATIONS

    db = tmp_path / "results.db"
    before = [m.__name__ for m in MIGRATIONS].index("_migration_printable_text")
    old = Database(db)
    for migration in MIGRATIONS[:before]:
        migration(old)
    old["runs"].insert({"id": 1, "kind": "bisect", "recipe_path": "r.py", "recipe_hash": "rh", "signature": "s",
                        "status": "done", "started_at": "2026-01-01T00:00:00Z"})
    common = {"run_id": 1, "attempt": 0, "timed_out": 0, "flaky": 0, "created_at": "2026-01-01T00:00:00Z"}
    old["probes"].insert({**common, "id": 1, "seq": 1, "stdout_tail": "\x1b[2J\x1b]0;title\x07cleared\r\n",
                          "stderr_tail": "\x1b[31mFAILED\x1b[0m ValueError: x\u202e", "reason": "crashed: \x1b]52;c;ZXZpbA==\x07x",
                          "metrics": '{"lo\\u001b[2Jss": 1.5, "device": "GPU\\u0007"}'})
    old["probes"].insert({**common, "id": 2, "seq": 2, "stdout_tail": "ok\n\ttab", "stderr_tail": "",
                          "reason": "exit 0", "metrics": '{"loss": NaN, "name": "caf\u00e9"}'})
    old.execute(f"PRAGMA user_version = {before}")
    old.close()
    with Store(db) as s:
        raw, clean = s.probes_for_run(1)
    assert raw["stdout_tail"] == "cleared\n" and raw["stderr_tail"] == "FAILED ValueError: x\\u202e"
    assert raw["reason"] == "crashed: x" and raw["metrics"] == {"loss": 1.5, "device": "GPU\\x07"}
    assert (clean["stdout_tail"], clean["stderr_tail"], clean["reason"]) == ("ok\n\ttab", "", "exit 0")
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT metrics FROM probes WHERE id = 2").fetchone()[0] == '{"loss": NaN, "name": "caf\u00e9"}'
    assert _user_version(db) == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CacheError, match="newer than this envbisect"):
        Store(db)


def test_unwritable_path_raises_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    db = blocker / "results.db"
    with pytest.raises(CacheError) as info:
        Store(db)
    message = str(info.value)
    assert message.startswith(f"cannot write the results database at {db}: ")
    assert message.endswith("; pass --cache-dir to a writable directory")


def test_garbage_file_raises_cache_error(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match="cannot write the results database"):
        Store(db)
