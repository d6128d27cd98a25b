"""The watch daemon's rows in the results database: ``watches`` and ``watch_releases``.

A mixin of :class:`envbisect.store.Store` (which alone opens the database), kept apart so
the store stays one readable module. ``watch_releases`` is the set of releases each watch
has seen, with the verdict learned for each when there is one: set membership, not
"newer than the last seen", decides what is new (see :mod:`envbisect.watchplan`).
"""

from __future__ import annotations

from typing import Any

from envbisect.records import check_fields, encode, utc_now


class WatchRows:
    """Watch state queries of the store. They run on the store's connection, inside its
    ``_write`` transactions and through its ``_rows``/``_first`` readers."""

    _db: Any
    _conn: Any
    _watch_fields: frozenset[str]

    def upsert_watch(self, name: str, **fields: Any) -> None:
        """Create the watch ``name`` or update the given fields, keeping the others."""
        check_fields("upsert_watch", fields, self._watch_fields)
        with self._write():
            self._db["watches"].upsert(encode("watches", {"name": name, **fields}), pk="name")

    def get_watch(self, name: str) -> dict | None:
        """The stored state of watch ``name``, or ``None`` if never seen."""
        return self._first("watches", "SELECT * FROM watches WHERE name = ?", [name])

    def list_watches(self) -> list[dict]:
        """Every stored watch, by name."""
        return self._rows("watches", "SELECT * FROM watches ORDER BY name")

    def watch_releases(self, name: str) -> dict[str, dict]:
        """The releases watch ``name`` has seen: version -> {verdict, run_id, seen_at}."""
        sql = "SELECT version, verdict, run_id, seen_at FROM watch_releases WHERE watch = ?"
        rows = self._db.execute(sql, [name]).fetchall()
        return {v: {"verdict": verdict, "run_id": run_id, "seen_at": seen} for v, verdict, run_id, seen in rows}

    def save_check(self, name: str, releases: dict[str, tuple[str | None, int | None]], *, forget: bool = False,
                   **fields: Any) -> None:
        """In one transaction: mark ``releases`` (version -> (verdict, run id)) as seen by
        watch ``name`` and update its row. A known verdict is never replaced by ``None``;
        ``forget`` first drops every release the watch had seen (a new baseline)."""
        check_fields("save_check", fields, self._watch_fields)
        sql = ("INSERT INTO watch_releases (watch, version, verdict, run_id, seen_at) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (watch, version) DO UPDATE SET verdict = COALESCE(excluded.verdict, verdict), "
               "run_id = COALESCE(excluded.run_id, run_id)")
        now = utc_now()
        with self._write():
            if forget:
                self._conn.execute("DELETE FROM watch_releases WHERE watch = ?", [name])
            self._conn.executemany(sql, [(name, v, verdict, run_id, now)
                                         for v, (verdict, run_id) in releases.items()])
            self._db["watches"].upsert(encode("watches", {"name": name, **fields}), pk="name")
