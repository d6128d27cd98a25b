"""The ``bisect watch`` and ``bisect attach`` commands.

Kept apart from :mod:`envbisect.cli` so the daemon's options live next to each other;
``cli.py`` registers both functions on its app. Like every command they parse options,
build :class:`Settings`, call one core function and render; errors a user can act on
are raised as :class:`EnvbisectError` for ``cli.main`` to print on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from envbisect.cli_options import run_id_argument, settings_for
from envbisect.config import CACHE_ENV
from envbisect.store import Store
from envbisect.trackers import GitHub, attach_run, finding_for_run, parse_issue
from envbisect.watch import run as run_watch
from envbisect.watchconfig import DEFAULT_CONFIG, load_file


def watch(
    config: Path = typer.Option(Path(DEFAULT_CONFIG), "--config", help="Watch configuration (TOML)."),
    once: bool = typer.Option(False, "--once", help="Run every watch once and exit (for cron and CI schedules)."),
    installer: str = typer.Option("uv", "--installer", envvar="ENVBISECT_INSTALLER", help="uv (default) or pip."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar=CACHE_ENV,
                                             help="State directory (default ./cache); one daemon per directory."),
) -> None:
    """Check watched packages for new releases, bisect regressions and fixes, post findings.

    Without --once it runs until SIGTERM/SIGINT, sleeping until the next watch is due;
    with --once every watch is checked now (the scheduler owns the interval). Exit status
    with --once: 0 all checked and posted, 1 a watch failed or a finding is still queued.
    """
    specs, executor = load_file(config)  # validate everything before taking the lock
    settings = settings_for(cache_dir, installer=installer, prefetch=executor.prefetch, jobs=executor.jobs,
                            executor=executor.kind, scheduler=executor.scheduler)
    code = run_watch(specs, settings, once=once, source=str(config))
    raise typer.Exit(code)


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
