"""The ``bisect watch`` (and ``bisect watch status``) and ``bisect attach`` commands.

Kept apart from :mod:`envbisect.cli` so the daemon's options live next to each other;
``cli.py`` registers both functions on its app. Like every command they parse options,
build :class:`Settings`, call one core function and render; errors a user can act on
are raised as :class:`EnvbisectError` for ``cli.main`` to print on one line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from envbisect.cli_options import AsJson, out, print_json, run_id_argument, settings_for
from envbisect.cli_records import cache_paths
from envbisect.config import CACHE_ENV

# The daemon, the tracker client, the store and rich's tables are imported by the
# commands that use them: `bisect --help` must not pay for them. The default config
# name is watchconfig.DEFAULT_CONFIG, spelled here for the same reason.
DEFAULT_CONFIG = "bisect.toml"


watch_app = typer.Typer(rich_markup_mode=None)


@watch_app.callback(invoke_without_command=True)
def watch(
    ctx: typer.Context,
    config: Path = typer.Option(Path(DEFAULT_CONFIG), "--config", help="Watch configuration (TOML)."),
    once: bool = typer.Option(False, "--once", help="Run one cycle and exit (for cron and CI schedules)."),
    force: bool = typer.Option(False, "--force", help="Check every watch now, even those not due yet."),
    installer: str = typer.Option("uv", "--installer", envvar="ENVBISECT_INSTALLER", help="uv (default) or pip."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar=CACHE_ENV,
                                             help="State directory (default ./cache); one daemon per directory."),
) -> None:
    """Check watched packages for new releases, bisect regressions and fixes, post findings.

    Without --once it runs until SIGTERM/SIGINT, sleeping until the next watch is due;
    with --once it checks the watches that are due (every, or a back-off after failures;
    --force: all of them) and exits. Exit status with --once: 0 all checked and posted,
    1 a watch failed or a finding is still queued. `bisect watch status` shows each watch.
    With [[listen]] tables it also serves `/envbisect run` requests posted in issue
    comments (docs/watch.md); --once polls every listened repository.
    """
    if ctx.invoked_subcommand is not None:
        return
    from envbisect.watch import run as run_watch
    from envbisect.watchconfig import load_daemon

    specs, executor, listens = load_daemon(config)  # validate everything before taking the lock
    settings = settings_for(cache_dir, installer=installer, prefetch=executor.prefetch, jobs=executor.jobs,
                            executor=executor.kind, scheduler=executor.scheduler)
    code = run_watch(specs, settings, once=once, force=force, source=str(config), listens=listens)
    raise typer.Exit(code)


@watch_app.command("status")
def status(
    config: Path = typer.Option(Path(DEFAULT_CONFIG), "--config", help="Watch configuration (TOML)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar=CACHE_ENV, help="State directory."),
    json_out: bool = AsJson,
) -> None:
    """Each watch: last check, last verdict, next check, last error, open findings."""
    from rich.table import Table
    from rich.text import Text

    from envbisect import watchstate
    from envbisect.store import Store
    from envbisect.watchconfig import load_file

    specs, _ = load_file(config)
    db = cache_paths(cache_dir).db
    rows = []
    if db.exists():  # a read: never create the database
        with Store(db) as store:
            rows = store.list_watches()
    entries = watchstate.status(specs, rows, time.time())
    if json_out:
        print_json({"watches": entries})
        return
    where = f"database {db}" if db.exists() else f"nothing recorded yet: no database at {db}"
    table = Table(title=f"watches of {config} ({where})")
    for column in watchstate.COLUMNS:
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(*(Text(cell) for cell in watchstate.cells(entry)))  # Text: brackets in an error are not markup
    out.print(table)


def attach(
    run_id: int = run_id_argument("Run id of a finished bisection (see `bisect history`)."),
    issue: str = typer.Option(..., "--issue", help="owner/repo#N or the issue's URL."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the comment instead of posting it."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar=CACHE_ENV, help="State directory."),
) -> None:
    """Post RUN's finding as a comment on an issue (updated in place if already posted).

    Uses GITHUB_TOKEN (or the file named by GITHUB_TOKEN_FILE, or $CREDENTIALS_DIRECTORY/github_token)
    and GITHUB_API_URL (default: the public GitHub API; https only, except to a loopback host).
    """
    from envbisect.store import Store
    from envbisect.findings import finding_for_run
    from envbisect.trackers import GitHub, attach_run, parse_issue

    ref = parse_issue(issue)
    with Store(settings_for(cache_dir).cache.db) as store:
        if dry_run:
            finding = finding_for_run(store.get_run(run_id), store.probes_for_run(run_id))
            typer.echo(f"would post to {ref} (finding {finding.key}):\n")
            typer.echo(finding.body)
            return
        with GitHub() as tracker:
            finding, posted = attach_run(store, tracker, run_id, ref)
    typer.echo(f"{posted.action.value} comment on {ref}: {posted.comment.url}")
