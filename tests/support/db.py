"""Reading a results database from a test while a run may still be creating it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def query(db: Path, sql: str, params: tuple = ()) -> list[dict]:
    """Rows of ``sql`` on the results database; none while it or its tables do not exist yet."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        con.close()


def rows(db: Path, run_id: int | None = None) -> list[dict]:
    """Probe rows (of one run, or of all), in the order they were written."""
    if run_id is None:
        return query(db, "SELECT * FROM probes ORDER BY id")
    return query(db, "SELECT * FROM probes WHERE run_id = ? ORDER BY id", (run_id,))
