"""The results database: schema, migrations and every query envbisect makes.

The only module that imports :mod:`sqlite_utils`, so the storage format changes in
one place. Tables: ``runs`` (one per invocation), ``probes`` (one per recipe
execution or reuse), ``watches`` (daemon state) and ``watch_releases`` (the releases each
watch has seen; both through :mod:`envbisect.watchrows`), ``attachments`` (posted comments).

Several processes share one file, so it runs in WAL mode with a busy timeout and
every write is its own ``BEGIN IMMEDIATE`` transaction (holding the write lock from
the start makes a writer wait instead of failing on a stale snapshot). Each write
commits before its method returns, with ``synchronous=FULL``, so a recorded probe
survives ``kill -9`` or power loss. Schema changes are numbered migrations recorded
in ``PRAGMA user_version`` (:mod:`envbisect.migrations`). JSON columns are TEXT on disk and decoded on read (the row model and
its encoding live in :mod:`envbisect.records`).

The store never redacts: callers must not pass secrets (tokens, credentials in index
URLs) in settings, argv, output tails or watch state.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from envbisect import __version__
from envbisect.errors import AlreadyRunning, CacheError, RunNotFound
from envbisect.records import (TERMINAL_STATUSES, RunKind, RunStatus, check_fields, decode, encode, host_info,
                               utc_now)
from envbisect.listenrows import ListenRows
from envbisect.migrations import MIGRATIONS, SCHEMA_VERSION
from envbisect.watchrows import WatchRows

#: Seconds a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30.0

#: Shown instead of a path for in-memory stores.
MEMORY = ":memory:"


class Store(WatchRows, ListenRows):
    """One connection to the results database; also a context manager. The watch
    daemon's queries are inherited from :class:`envbisect.watchrows.WatchRows`, the issue
    listener's from :class:`envbisect.listenrows.ListenRows`.

    One Store per thread (connections are not shared); any number of processes.
    """

    def __init__(self, path: Path | str | None) -> None:
        """Open (creating if needed) and migrate the database at ``path``.

        ``None`` or ``":memory:"`` gives a private in-memory database (for tests).
        Raises :class:`CacheError` when the file cannot be created or written.
        """
        self.path: Path | None = None if path in (None, MEMORY) else Path(path)
        #: The database location as shown in messages.
        self.where = str(self.path or MEMORY)
        conn: sqlite3.Connection | None = None
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; writes use _write().
            conn = sqlite3.connect(self.where, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._conn = conn
            self._db = Database(conn, execute_plugins=False)
            self._configure()
            self._migrate()
            # Keyword fields callers may set: the live columns (so a migration that
            # adds a column needs no second list), minus those the store fills in.
            self._probe_fields = frozenset(self._db["probes"].columns_dict) - {
                "id", "run_id", "created_at"}
            self._watch_fields = frozenset(self._db["watches"].columns_dict) - {"name"}
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise CacheError(
                    f"cannot write the results database at {self.where}: {exc}; "
                    "pass --cache-dir to a writable directory"
                ) from exc
            raise

    def close(self) -> None:
        """Close the connection (every write is already committed)."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _configure(self) -> None:
        """Per-connection settings: concurrency, durability, integrity."""
        self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._conn.execute("PRAGMA foreign_keys = ON")
        if self.path is not None:
            self._enable_wal()
            # FULL: a committed probe survives power loss, not just a killed process.
            self._conn.execute("PRAGMA synchronous = FULL")

    def _enable_wal(self) -> None:
        """Switch the file to WAL mode. Two processes opening a new database at once
        (two runs started together) can get "database is locked" from the switch at
        once, without the busy timeout being applied, so it is retried for as long."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._db.enable_wal()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _user_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Apply the migrations this file has not seen yet, each exactly once."""
        current = self._user_version()
        if current > SCHEMA_VERSION:
            raise CacheError(
                f"the results database at {self.where} has schema version {current}, "
                f"newer than this envbisect understands ({SCHEMA_VERSION}); "
                "upgrade envbisect or pass --cache-dir to another directory"
            )
        for version, migration in enumerate(MIGRATIONS[current:], start=current + 1):
            with self._write():
                # Re-read under the write lock: another process may have migrated.
                if self._user_version() >= version:
                    continue
                migration(self._db)
                self._conn.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One committed transaction holding the write lock from its first statement."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _rows(self, table: str, sql: str, params: tuple | list = ()) -> list[dict]:
        return [decode(table, row) for row in self._db.query(sql, params)]

    def _first(self, table: str, sql: str, params: tuple | list = ()) -> dict | None:
        rows = self._rows(table, sql, params)
        return rows[0] if rows else None

    def _require_run(self, run_id: int) -> None:
        if not self._db.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone():
            raise RunNotFound(f"no run {run_id} in {self.where}; list runs with `bisect history`")

    def create_run(
        self, *, kind: str, recipe_path: str, recipe_hash: str, package: str | None,
        spec: str | None, signature: str, settings: dict, argv: list[str],
    ) -> int:
        """Record a new run in status ``running`` and return its id.

        ``signature`` identifies "the same question asked again" so an interrupted
        run can be found and resumed (see :meth:`claim_run`).
        """
        with self._write():
            return self._insert_run(kind=kind, recipe_path=recipe_path, recipe_hash=recipe_hash, package=package,
                                    spec=spec, signature=signature, settings=settings, argv=argv)

    def _insert_run(self, *, kind: str, argv: list[str], **fields: Any) -> int:
        """Insert a run row (inside the caller's write transaction); returns its id."""
        record = {"kind": RunKind(kind), "argv": list(argv), "status": RunStatus.RUNNING, "started_at": utc_now(),
                  "envbisect_version": __version__, "host": host_info(), **fields}
        return int(self._db["runs"].insert(encode("runs", record)).last_pk)

    def find_resumable_run(self, signature: str) -> dict | None:
        """The newest run with this signature that is ``running`` or ``interrupted``."""
        sql = "SELECT * FROM runs WHERE signature = ? AND status IN (?, ?) ORDER BY id DESC LIMIT 1"
        return self._first("runs", sql, [signature, RunStatus.RUNNING, RunStatus.INTERRUPTED])

    def claim_run(self, *, owner: dict, is_alive: Callable[[dict], bool], snapshot: str | None,
                  **run: Any) -> tuple[dict, bool]:
        """Resume the unfinished run with ``run["signature"]`` or create one, atomically.

        In one write transaction: the newest ``running``/``interrupted`` run with that
        signature is taken over (status ``running``, ``owner`` set) unless ``is_alive``
        says its owner still works on it, which raises :class:`AlreadyRunning`; with no
        such run a new one is created with this ``snapshot``. Returns (the run, resumed).
        Two processes asking at once can therefore never both work on one run.
        """
        with self._write():
            found = self.find_resumable_run(run["signature"])
            if found is not None:
                holder = found.get("owner") or {}
                if found["status"] == RunStatus.RUNNING and holder and is_alive(found):
                    raise AlreadyRunning(
                        f"run {found['id']} asks the same question and is still in progress "
                        f"(PID {holder.get('pid')} on {holder.get('host')}); wait for it to finish, "
                        f"follow it with `bisect show {found['id']}`, or stop that process and run again to resume"
                    )
                changes = {"status": RunStatus.RUNNING, "finished_at": None, "owner": owner,
                           "heartbeat": utc_now()}
                self._db["runs"].update(found["id"], encode("runs", changes))
                return self._first("runs", "SELECT * FROM runs WHERE id = ?", [found["id"]]), True
            run_id = self._insert_run(owner=owner, snapshot=snapshot, heartbeat=utc_now(), **run)
            return self._first("runs", "SELECT * FROM runs WHERE id = ?", [run_id]), False

    def heartbeat(self, run_id: int) -> None:
        """Stamp a run as still worked on (see :meth:`claim_run`)."""
        with self._write():
            self._conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", [utc_now(), run_id])

    def update_run(self, run_id: int, *, status: str, result: dict | None = None) -> None:
        """Set a run's status (and result, when given; ``None`` keeps the stored one).

        Terminal statuses (``done``, ``failed``) stamp ``finished_at``; going back to
        ``running`` or ``interrupted`` clears it, since the run is not finished.
        """
        state = RunStatus(status)
        finished_at = utc_now() if state in TERMINAL_STATUSES else None
        changes: dict[str, Any] = {"status": state, "finished_at": finished_at}
        if result is not None:
            changes["result"] = result
        with self._write():
            self._require_run(run_id)
            self._db["runs"].update(run_id, encode("runs", changes))

    def get_run(self, run_id: int) -> dict:
        """The run with this id, with ``recipe_text`` (the recipe it ran, None for runs
        recorded before texts were kept); :class:`RunNotFound` if there is none."""
        sql = ("SELECT runs.*, recipes.text AS recipe_text FROM runs LEFT JOIN recipes "
               "ON recipes.hash = runs.recipe_hash WHERE runs.id = ?")
        run = self._first("runs", sql, [run_id])
        if run is None:
            self._require_run(run_id)  # raises with the user-facing message
        return run

    def list_runs(self, limit: int = 50) -> list[dict]:
        """The newest ``limit`` runs, newest first, each with a ``probe_count``."""
        count = "(SELECT COUNT(*) FROM probes WHERE probes.run_id = runs.id) AS probe_count"
        sql = f"SELECT runs.*, {count} FROM runs ORDER BY id DESC LIMIT ?"
        return self._rows("runs", sql, [limit])

    def latest_run_id(self) -> int | None:
        """Id of the newest run, or ``None`` for an empty database."""
        return self._db.execute("SELECT MAX(id) FROM runs").fetchone()[0]

    def add_probe(self, run_id: int, **fields: Any) -> int:
        """Record one probe of ``run_id`` and return its id; committed on return.
        See :meth:`record_probe`."""
        return self.record_probe(run_id, **fields)[0]

    def record_probe(self, run_id: int, **fields: Any) -> tuple[int, int]:
        """Record one probe row of ``run_id``; returns (its id, its seq). Committed on return.

        ``fields`` are probe columns (unknown names raise :class:`TypeError`). When
        ``seq`` is omitted it is the next number in this run, assigned inside the same
        write transaction as the insert, so concurrent writers never share a number.
        Later attempts of the same candidate pass the seq the first one got.
        """
        check_fields("add_probe", fields, self._probe_fields)
        with self._write():
            self._require_run(run_id)
            if fields.get("seq") is None:
                sql = "SELECT COALESCE(MAX(seq), 0) + 1 FROM probes WHERE run_id = ?"
                fields["seq"] = self._conn.execute(sql, [run_id]).fetchone()[0]
            record = {"attempt": 1, "timed_out": False, "flaky": False, **fields}
            record.update(run_id=run_id, created_at=utc_now())
            table = self._db["probes"].insert(encode("probes", record))
        return int(table.last_pk), int(record["seq"])

    def find_reusable(self, *probe_keys: str) -> list[dict]:
        """Every executed probe with one of these probe keys (one per machine that could
        run it), newest first, across all runs.

        Only rows that actually ran (``reused_from IS NULL``) and reached an outcome
        count: copies would chain, and a probe killed before it was judged has
        nothing to reuse. The caller applies the timeout rule.
        """
        marks = ", ".join("?" for _ in probe_keys)
        sql = (f"SELECT * FROM probes WHERE probe_key IN ({marks}) AND reused_from IS NULL AND outcome IS NOT NULL"
               " ORDER BY id DESC")
        return self._rows("probes", sql, list(probe_keys))

    def output_hashes(self) -> set[str]:
        """The content hashes of every output a recorded probe names (what ``cache prune`` keeps)."""
        rows = self._db.execute("SELECT outputs FROM probes WHERE outputs IS NOT NULL").fetchall()
        return {entry.get("hash") for (text,) in rows for entry in json.loads(text).values()}

    def put_lock(self, lock_hash: str, text: str) -> None:
        """Keep a lock's text by its hash (a probe row names it by ``lock_hash``)."""
        with self._write():
            self._conn.execute("INSERT OR IGNORE INTO locks (hash, text, created_at) VALUES (?, ?, ?)",
                               [lock_hash, text, utc_now()])

    def put_recipe(self, recipe_hash: str, text: str) -> None:
        """Keep a recipe's text by its hash (a run names it by ``recipe_hash``)."""
        with self._write():
            self._conn.execute("INSERT OR IGNORE INTO recipes (hash, text, created_at) VALUES (?, ?, ?)",
                               [recipe_hash, text, utc_now()])

    def get_lock(self, lock_hash: str) -> str | None:
        """The text of a stored lock, or None."""
        row = self._db.execute("SELECT text FROM locks WHERE hash = ?", [lock_hash]).fetchone()
        return row[0] if row else None

    def mark_flaky(self, run_id: int, seq: int) -> int:
        """Flag every attempt of probe ``seq`` in a run as flaky; returns rows changed."""
        with self._write():
            cursor = self._conn.execute(
                "UPDATE probes SET flaky = 1 WHERE run_id = ? AND seq = ?", [run_id, seq])
        return cursor.rowcount

    def probes_for_run(self, run_id: int) -> list[dict]:
        """Every probe of a run, in the order they were recorded."""
        return self._rows("probes", "SELECT * FROM probes WHERE run_id = ? ORDER BY id", [run_id])

    def add_attachment(self, run_id: int, issue: str, comment_url: str, body_hash: str) -> int:
        """Record that a run's finding was posted as ``comment_url`` on ``issue``."""
        record = {"run_id": run_id, "issue": issue, "comment_url": comment_url,
                  "body_hash": body_hash, "created_at": utc_now()}
        with self._write():
            self._require_run(run_id)
            table = self._db["attachments"].insert(record)
        return int(table.last_pk)

    def attachments_for_run(self, run_id: int) -> list[dict]:
        """A run's attachments in the order they were posted."""
        sql = "SELECT * FROM attachments WHERE run_id = ? ORDER BY id"
        return self._rows("attachments", sql, [run_id])
