"""The results database's schema: numbered migrations, applied in order by
:class:`envbisect.store.Store` (``PRAGMA user_version`` records how many ran).

Records layer, part of the store: each function receives the store's open database
(typed here only by what the migrations call on it, so that :mod:`envbisect.store` stays
the one module that imports sqlite-utils). To change the schema, write the next function
and append it to :data:`MIGRATIONS`; never edit one that shipped (databases in the field
already ran it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from envbisect.printable import printable, printable_json

#: The open database a migration changes (the store's sqlite-utils ``Database``).
Database = Any


def _migration_1(db: Database) -> None:
    """Create every table and index of the first schema."""
    db["runs"].create(
        {
            "id": int, "kind": str, "recipe_path": str, "recipe_hash": str,
            "package": str, "spec": str, "signature": str, "settings": str,
            "argv": str, "status": str, "result": str, "started_at": str,
            "finished_at": str, "envbisect_version": str, "host": str,
        },
        pk="id",
        not_null=["kind", "recipe_path", "recipe_hash", "signature", "status", "started_at"],
    )
    db["runs"].create_index(["signature"], index_name="runs_signature")
    db["probes"].create(
        {
            "id": int, "run_id": int, "seq": int, "attempt": int, "recipe_hash": str,
            "env_key": str, "host": str, "package": str, "version": str,
            "requirements": str, "resolved": str, "exit_code": int, "signal": int,
            "timed_out": int, "outcome": str, "verdict": str, "reason": str,
            "metrics": str, "metrics_note": str, "duration_s": float,
            "env_build_s": float, "stdout_tail": str, "stderr_tail": str,
            "log_path": str, "reused_from": int, "flaky": int, "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id"), ("reused_from", "probes", "id")],
        not_null=["run_id", "seq", "attempt", "timed_out", "flaky", "created_at"],
        defaults={"attempt": 1, "timed_out": 0, "flaky": 0},
    )
    db["probes"].create_index(["recipe_hash", "env_key", "host"], index_name="probes_reuse")
    db["probes"].create_index(["run_id"], index_name="probes_run")
    db["watches"].create(
        {"name": str, "recipe": str, "package": str, "index_url": str, "last_seen": str,
         "etag": str, "last_check": str, "state": str},
        pk="name",
    )
    db["attachments"].create(
        {"id": int, "run_id": int, "issue": str, "comment_url": str, "body_hash": str,
         "created_at": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
        not_null=["run_id", "issue", "created_at"],
    )
    db["attachments"].create_index(["run_id"], index_name="attachments_run")


def _migration_2(db: Database) -> None:
    """Exact probes: locks, probe keys, host fingerprints, run ownership and snapshots.

    ``runs``: ``snapshot`` (the ``--exclude-newer`` instant every resolve of the run uses,
    so a resume sees the same world), ``owner`` (host, pid and start time of the process
    working on it) and ``heartbeat``. ``probes``: ``lock_hash``, ``probe_key`` (what reuse
    matches on), ``env_values`` (the declared environment variables), ``timeout_s`` and
    ``fingerprint`` (the host's details). ``locks``: each lock's text, by hash. Rows
    written before this migration have no ``probe_key`` and are never reused.
    """
    for column, kind in (("snapshot", str), ("owner", str), ("heartbeat", str)):
        db["runs"].add_column(column, kind)
    for column, kind in (("lock_hash", str), ("probe_key", str), ("env_values", str), ("timeout_s", float),
                         ("fingerprint", str)):
        db["probes"].add_column(column, kind)
    db["probes"].create_index(["probe_key"], index_name="probes_key")
    db["locks"].create({"hash": str, "text": str, "created_at": str}, pk="hash", not_null=["text", "created_at"])


def _migration_source_revisions(db: Database) -> None:
    """Upstream source ranges: ``probes.source``, what :mod:`envbisect.sourceprobe` read in
    the env after the recipe ran (each distribution's recorded revision and metadata URLs).
    Rows written before it have none: their ranges say so."""
    db["probes"].add_column("source", str)


def _migration_watch_releases(db: Database) -> None:
    """Watch schedules and the set of releases each watch has seen.

    ``watches`` gains ``next_check`` (when the next check is due: the interval after a
    success, a back-off after failures), ``failures`` (consecutive failed checks) and
    ``last_error``. ``watch_releases`` holds one row per (watch, release) seen, with the
    verdict learned for it (NULL for releases only seen, e.g. the history before the first
    check) and the run that learned it. Watches stored before this migration get their
    set from the listing at their next check (every release up to ``last_seen``).
    """
    for column, kind in (("next_check", str), ("failures", int), ("last_error", str)):
        db["watches"].add_column(column, kind)
    db["watch_releases"].create(
        {"watch": str, "version": str, "verdict": str, "run_id": int, "seen_at": str},
        pk=("watch", "version"), not_null=["seen_at"],
    )


def _migration_listen(db: Database) -> None:
    """The issue-comment listener (listen.py): ``listens``, one row per repository (the
    ``since`` cursor, the listing's ETag, backoff ``state``), and ``listen_requests``, one
    row per ``/envbisect run`` comment seen (its status, the recipe and its hash, the
    answer comment and the run)."""
    db["listens"].create({"repo": str, "since": str, "etag": str, "state": str}, pk="repo")
    db["listen_requests"].create(
        {"key": str, "repo": str, "issue": int, "comment_id": int, "author": str, "status": str,
         "recipe_hash": str, "recipe": str, "request": str, "answer_id": int, "run_id": int, "updated_at": str},
        pk="key")
    db["listen_requests"].create_index(["status"], index_name="listen_requests_status")


def _migration_outputs(db: Database) -> None:
    """Outputs and reference comparison: ``probes.outputs`` (the manifest of the files the
    recipe wrote to ``$ENVBISECT_OUTPUTS``: name -> content hash, kind, shape), its
    ``outputs_note``, and ``comparison`` (per output, the differences from a reference
    release's contents, with that reference's digest)."""
    for column in ("outputs", "outputs_note", "comparison"):
        db["probes"].add_column(column, str)


def _migration_recipe_texts(db: Database) -> None:
    """Recipe texts by hash (``recipes``), so a report shows the exact recipe a run used
    even after the file changed or moved: reports must be self-contained."""
    db["recipes"].create({"hash": str, "text": str, "created_at": str}, pk="hash", not_null=["text", "created_at"])


def _migration_env_changed(db: Database) -> None:
    """``probes.env_changed``: what a recipe changed in its own env (:mod:`envbisect.envguard`),
    which makes its probe untestable, in this run and whenever the row is judged again."""
    db["probes"].add_column("env_changed", str)


def _migration_printable_text(db: Database) -> None:
    """What older versions stored raw, made printable as it is captured today
    (:mod:`envbisect.printable`): the output tails, the reasons that quote them, and the
    names and strings of the metrics. They are shown (``check``, ``show``, reports,
    comments), where a recipe's escape sequences would act on a terminal, and matched by
    signatures and thresholds when a row is judged again, as a new row's are."""
    updates = []  # only the rows that change are held, not every tail of a large database
    for probe_id, out, err, reason, metrics in db.execute("SELECT id, stdout_tail, stderr_tail, reason, metrics "
                                                          "FROM probes"):
        changed = {}
        for column, text in (("stdout_tail", out), ("stderr_tail", err), ("reason", reason)):
            if text is not None and (clean := printable(text)) != text:
                changed[column] = clean
        if metrics is not None:
            value = json.loads(metrics)
            if (clean := json.dumps(printable_json(value), sort_keys=True)) != json.dumps(value, sort_keys=True):
                changed["metrics"] = clean
        if changed:
            updates.append((probe_id, changed))
    for probe_id, changed in updates:
        db["probes"].update(probe_id, changed)


#: Migration N is ``MIGRATIONS[N - 1]``; each runs once, in its own transaction.
MIGRATIONS: list[Callable[[Database], None]] = [_migration_1, _migration_2, _migration_source_revisions,
                                               _migration_watch_releases, _migration_listen,
                                               _migration_outputs, _migration_recipe_texts,
                                               _migration_env_changed, _migration_printable_text]

#: The schema version this code writes (``PRAGMA user_version`` after migrating).
SCHEMA_VERSION: int = len(MIGRATIONS)
