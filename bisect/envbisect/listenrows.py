"""The issue listener's rows in the results database: ``listens`` and ``listen_requests``.

A mixin of :class:`envbisect.store.Store` (which alone opens the database and owns the
migration that creates these tables, ``_migration_listen``), like
:mod:`envbisect.watchrows`. ``listens`` holds one row per repository: the ``since`` cursor,
the listing's ETag and the back-off ``state``; ``listen_requests`` one row per
``/envbisect run`` comment seen (see :mod:`envbisect.listen`).
"""

from __future__ import annotations

from typing import Any

from envbisect.records import check_fields, encode

_KEYS = {"listens": "repo", "listen_requests": "key"}


class ListenRows:
    """Listener queries of the store, on its connection and inside its ``_write`` transactions."""

    _db: Any

    def put_listen(self, table: str, key: str, **fields: Any) -> None:
        """Create or update a row of ``listens`` (by repository) or ``listen_requests`` (by
        request key); the fields not given are kept."""
        pk = _KEYS[table]
        check_fields("put_listen", fields, frozenset(self._db[table].columns_dict) - {pk})
        with self._write():
            self._db[table].upsert(encode(table, {pk: key, **fields}), pk=pk)

    def get_listen(self, table: str, key: str) -> dict | None:
        """One row of ``listens`` or ``listen_requests`` (see :meth:`put_listen`), or None."""
        return self._first(table, f"SELECT * FROM {table} WHERE {_KEYS[table]} = ?", [key])

    def open_requests(self, repo: str, statuses: tuple[str, ...]) -> list[dict]:
        """The requests of ``repo`` in one of ``statuses``, oldest comment first."""
        marks = ", ".join("?" for _ in statuses)
        sql = f"SELECT * FROM listen_requests WHERE repo = ? AND status IN ({marks}) ORDER BY comment_id"
        return self._rows("listen_requests", sql, [repo, *statuses])
