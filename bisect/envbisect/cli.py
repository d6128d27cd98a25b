"""The ``bisect`` command line (alias ``envbisect``).

Each command parses its options, builds :class:`Settings`, calls one core function and
renders the result. Options are paired with their environment variables, as nox does.
Errors a user can act on (:class:`EnvbisectError`) are printed as one line, prefixed
``error:``, and exit with their code; nothing else is caught.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from envbisect import __version__, crashlog, reexec
from envbisect.cli_matrix import matrix
from envbisect.cli_narrow import narrow
from envbisect.cli_options import (AllowBuild, AsJson, Atol, CacheDir, Confidence, Direction, DivergeFrom,
                                   DownloadPython, Executor, ExtraIndex, FailureSignature, FindLinks, IndexUrl,
                                   Installer, Jobs, MaxSamples, Metric, NoReuse, Python, Quiet, Regress, Retries, Rtol,
                                   Samples, Scheduler, Thresholds, Timeout, deps_mode, err, judging_for, numerics_for,
                                   open_store, out, print_json, progress_for, run_id_argument, sampling_for,
                                   settings_for)
from envbisect.cli_records import cache_app, history, open_run, report_cmd
from envbisect.cli_watch import attach, watch_app
from envbisect.errors import ConfigError, EnvbisectError
from envbisect.redact import redact

# The run modules (search, probing, store, reports) are imported inside the commands
# that use them: `bisect --help` and argument errors never pay for them.

#: ``bisect check`` (and ``show --rerun``) exit with the recipe's own contract, and with
#: EXIT_CHECK_ERROR when it errored (crash, timeout, uncaught exception): never 4, which
#: means "inconclusive" for a bisection.
CHECK_EXIT = {"good": 0, "bad": 1, "skip": 125}
EXIT_CHECK_ERROR = 8

# rich_markup_mode=None: click's plain help. Typer's rich help panels import rich's
# Markdown, syntax highlighting and emoji tables, which doubled `bisect --help`'s start time.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Find the release that broke a numerical result.")
app.add_typer(cache_app, name="cache")


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe script (PEP 723)."),
    package: Optional[str] = typer.Option(None, "--package", "-p", help="Package to bisect (default: the recipe's)."),
    range_: Optional[str] = typer.Option(None, "--range", help="PEP 440 specifier limiting the candidates."),
    good: Optional[str] = typer.Option(None, "--good", help="A version known to be good."),
    bad: Optional[str] = typer.Option(None, "--bad", help="A version known to be bad."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Trust --good/--bad without probing them."),
    with_: List[str] = typer.Option([], "--with", help="Pin another package in every env, e.g. numpy==1.26.4."),
    pre: bool = typer.Option(False, "--pre", help="Include pre-releases and dev releases."),
    python: Optional[str] = Python,
    download_python: bool = DownloadPython,
    timeout: Optional[float] = Timeout,
    regress: str = Regress,
    threshold: List[str] = Thresholds,
    find_fix: bool = typer.Option(False, "--find-fix", help="Find the first good release after a bad one."),
    retries: int = Retries,
    metric: Optional[str] = Metric, samples: Optional[str] = Samples, confidence: Optional[float] = Confidence,
    max_samples: Optional[int] = MaxSamples, direction: Optional[str] = Direction,
    no_reuse: bool = NoReuse,
    allow_build: bool = AllowBuild,
    installer: str = Installer,
    index_url: Optional[str] = IndexUrl,
    extra_index_url: List[str] = ExtraIndex,
    find_links: List[str] = FindLinks,
    cache_dir: Optional[Path] = CacheDir,
    json_out: bool = AsJson,
    quiet: bool = Quiet,
    nightlies: bool = typer.Option(False, "--nightlies", help="After the releases, bisect the nightlies between "
                                   "last good and first bad (needs --nightly-index or --nightly-package)."),
    nightly_index: Optional[str] = typer.Option(None, "--nightly-index", help="Index holding the nightly builds "
                                                "(consulted first); without --nightlies, bisect only its nightlies."),
    nightly_package: Optional[str] = typer.Option(None, "--nightly-package", help="Name of the nightly package "
                                                  "when it differs, e.g. tf-nightly for tensorflow."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Nightly build variant (local label): cpu, "
                                          "cu126, ... (default: what fits this host)."),
    by: str = typer.Option("version", "--by", help="version (default): PACKAGE's releases | date: the days the "
                           "recipe's dependencies released on, then the culprit package."),
    since: Optional[str] = typer.Option(None, "--since", help="--by date: window start, YYYY-MM-DD or ISO time."),
    until: Optional[str] = typer.Option(None, "--until", help="--by date: window end (that day included)."),
    deps: str = typer.Option("latest", "--deps", help="Other dependencies of each candidate: latest (default) | "
                             "as-of-release (resolved as of the candidate's upload time)."),
    axis: List[str] = typer.Option([], "--axis", help="--by date: PKG[=SPEC] whose releases make the timeline "
                                   "(repeatable; default: the recipe's dependencies)."),
    prefetch: int = typer.Option(2, "--prefetch", min=0, envvar="ENVBISECT_PREFETCH",
                                 help="Build up to N environments ahead while a probe runs (0: off)."),
    jobs: int = Jobs,
    executor: str = Executor,
    scheduler: Optional[str] = Scheduler,
    narrow_found: bool = typer.Option(False, "--narrow", help="Then find the knob that turns the first bad "
                                      "env good (`bisect narrow`)."),
    diverge_from: Optional[str] = DivergeFrom, rtol: Optional[float] = Rtol, atol: Optional[float] = Atol,
    signature: Optional[str] = FailureSignature,
) -> None:
    """Bisect PACKAGE's releases (or, --by date, the days) for the first one where RECIPE fails."""
    from envbisect import report
    from envbisect.bydate import DateRequest, date_mode, run_by_date
    from envbisect.byversion import EXIT_CODES, run_bisection
    from envbisect.matrix import Axis
    from envbisect.nightly import ChannelConfig
    from envbisect.nightly_runs import run_nightlies, run_with_nightlies
    from envbisect.requests_model import BisectRequest
    from envbisect.recipes import load_recipe
    from envbisect.session import Session

    rec = load_recipe(recipe)
    by_date = date_mode(by, since=since, until=until, axis=axis, deps=deps, package=package, good=good, bad=bad,
                        find_fix=find_fix)
    pkg = package or rec.settings.package
    if not pkg and not by_date:
        raise ConfigError(f"no package to bisect: pass --package or set package in {recipe}'s [tool.envbisect] table")
    settings = settings_for(cache_dir, index_url or rec.settings.index_url, extra_index_url, find_links,
                            python or rec.settings.python, installer, allow_build, not no_reuse,
                            download_python, prefetch, jobs, executor, scheduler)
    judging = judging_for(timeout, regress, threshold, retries, rec)
    sampling = sampling_for(metric, samples, confidence, max_samples, direction, rec, retries=retries,
                            thresholds=threshold)
    if sampling is not None and (by_date or nightlies or nightly_index or nightly_package or variant):
        raise ConfigError("--samples auto works with release bisection only; drop --by date / the nightly options")
    argv = [redact(a) for a in sys.argv[1:]]
    dated = DateRequest(
        recipe=rec, axes=tuple(Axis.parse(a) for a in axis), since=since, until=until,
        with_=tuple(with_) or rec.settings.with_, pre=pre or rec.settings.pre, timeout=judging.timeout,
        regress=judging.regress, thresholds=judging.thresholds, retries=retries, argv=argv)
    req = BisectRequest(
        recipe=rec, package=pkg, spec=range_ if range_ is not None else rec.settings.range, good=good, bad=bad,
        verify=not no_verify, with_=tuple(with_) or rec.settings.with_, pre=pre or rec.settings.pre,
        timeout=judging.timeout, regress=judging.regress, thresholds=judging.thresholds, find_fix=find_fix,
        retries=retries, argv=argv, deps=deps_mode(deps), sampling=sampling)
    req.diverge_from, req.tolerance, req.signature = numerics_for(diverge_from, rtol, atol, signature, rec)
    if (by_date or sampling) and (req.diverge_from or req.signature):
        raise ConfigError("--diverge-from and signatures judge release bisections by exit and outputs; "
                          "drop --by date / --samples auto, or them")
    channel = ChannelConfig(nightly_index or rec.settings.nightly_index, nightly_package or rec.settings.nightly_package,
                            variant or rec.settings.variant)
    with open_store(settings) as store, progress_for(json_out, quiet) as progress, \
            Session(settings, store, progress) as session:
        if by_date:  # the timeline of the recipe's dependencies, then the culprit
            result = run_by_date(session, dated)
        elif nightlies:  # releases first, then the nightlies between the boundary releases
            result = run_with_nightlies(session, req, channel)
        elif nightly_index or nightly_package or variant:  # the channel's nightlies only
            result = run_nightlies(session, req, channel)
        else:
            result = run_bisection(session, req)
        if narrow_found and result.get("status") == "found":  # the knob that flips it, same session
            from envbisect.narrow import narrow_run
            result = dict(result, knobs=narrow_run(session, result["run_id"], argv=argv))
    if json_out:
        print_json(result)
    else:
        for i, line in enumerate(report.text_summary(result)):
            out.print(line, markup=False, style="bold" if i == 0 else None)
    raise typer.Exit(EXIT_CODES.get(result["status"], 1))


@app.command()
def check(
    recipe: Path = typer.Argument(..., help="Recipe script (PEP 723)."),
    with_: List[str] = typer.Option([], "--with", help="Pin a package, e.g. tensorflow==2.18.1 (repeatable)."),
    python: Optional[str] = Python,
    download_python: bool = DownloadPython,
    timeout: Optional[float] = Timeout,
    regress: str = Regress,
    threshold: List[str] = Thresholds,
    no_reuse: bool = NoReuse,
    allow_build: bool = AllowBuild,
    installer: str = Installer,
    index_url: Optional[str] = IndexUrl,
    extra_index_url: List[str] = ExtraIndex,
    find_links: List[str] = FindLinks,
    cache_dir: Optional[Path] = CacheDir,
    json_out: bool = AsJson,
    quiet: bool = Quiet,
) -> None:
    """Run RECIPE once in a cached environment and print its outcome and metrics."""
    from envbisect import report
    from envbisect.checks import run_check
    from envbisect.recipes import load_recipe
    from envbisect.requests_model import Numerics
    from envbisect.session import Session

    rec = load_recipe(recipe)
    settings = settings_for(cache_dir, index_url or rec.settings.index_url, extra_index_url, find_links,
                         python or rec.settings.python, installer, allow_build, not no_reuse,
                         download_python)
    with open_store(settings) as store, progress_for(json_out, quiet) as progress:
        result = run_check(Session(settings, store, progress), rec, with_=tuple(with_) or rec.settings.with_,
                           judging=Numerics.of(rec).judging(judging_for(timeout, regress, threshold, 0, rec)),
                           argv=[redact(a) for a in sys.argv[1:]])
    if json_out:
        print_json(result)
    else:
        out.print(f"{result['outcome']}: {result['reason']}  (run {result['run_id']}"
                  f"{', reused' if result['reused'] else ''})", markup=False)
        if result.get("metrics"):
            out.print("metrics: " + report.dumps(result["metrics"], sort_keys=True), markup=False)
        if result.get("metrics_note"):
            out.print(f"note: {result['metrics_note']}", markup=False)
        if result.get("resolved"):
            out.print("resolved: " + ", ".join(f"{k}=={v}" for k, v in sorted(result["resolved"].items())), markup=False)
        if result["outcome"] == "error" and result.get("stderr_tail"):
            out.print("stderr (tail):\n" + result["stderr_tail"][-1200:], markup=False)
    raise typer.Exit(CHECK_EXIT.get(result["outcome"], EXIT_CHECK_ERROR))


@app.command()
def versions(
    package: str = typer.Argument(..., help="Package name."),
    range_: Optional[str] = typer.Option(None, "--range", help="PEP 440 specifier."),
    pre: bool = typer.Option(False, "--pre", help="Include pre-releases."),
    python: Optional[str] = Python,
    allow_build: bool = AllowBuild,
    index_url: Optional[str] = IndexUrl,
    extra_index_url: List[str] = ExtraIndex,
    find_links: List[str] = FindLinks,
    cache_dir: Optional[Path] = CacheDir,
    json_out: bool = AsJson,
    platform: Optional[str] = typer.Option(None, "--platform", help="List for another platform, from wheel tags, "
                                           "e.g. macos-arm64 or windows-amd64 (with --python X.Y; default this host)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Nightly build variant (cpu, cu126, ...)."),
) -> None:
    """List PACKAGE's candidate releases for this host (or --platform), and what was left out and why."""
    from rich.table import Table

    from envbisect import nightly, report
    from envbisect.session import Session
    from envbisect.versions import Target, why_empty

    settings = settings_for(cache_dir, index_url, extra_index_url, find_links, None if platform else python,
                         allow_build=allow_build)
    aimed = Target.for_platform(platform, python or f"{sys.version_info[0]}.{sys.version_info[1]}") if platform else None
    cands, excluded, target = Session(settings, None).list_versions(package, range_, pre=pre, target=aimed)  # type: ignore[arg-type]
    cands, excluded, channel = nightly.arrange(cands, excluded, package=package, variant=variant)
    empty = why_empty(excluded, target, range_, package=package) if not cands else None
    if json_out:
        out.print(json.dumps({
            "package": package, "target": target.describe(), "platform": target.platform, "range": range_,
            "candidates": [{"version": str(c.version), "upload_time": c.upload_time.isoformat() if c.upload_time else None,
                            "needs_build": c.needs_build} for c in cands],
            "excluded": [{"version": e.version, "reason": e.reason.value, "detail": e.detail,
                          "platforms": list(e.platforms)} for e in excluded],
            "why_empty": empty, "channel": channel.as_dict() if channel else None,
        }, sort_keys=True), markup=False)
        return
    table = Table(title=f"{package} candidates for {target.describe()}")
    table.add_column("version")
    table.add_column("uploaded")
    for c in cands:
        table.add_row(report.shown(str(c.version)) + (" (sdist)" if c.needs_build else ""),
                      c.upload_time.strftime("%Y-%m-%d") if c.upload_time else "")
    out.print(table)
    for e in excluded:
        out.print(f"left out {e.version}: {e.reason.value}" + (f" ({e.detail})" if e.detail else ""), markup=False)
    out.print(f"{len(cands)} candidates, {len(excluded)} left out", markup=False)
    if channel:
        out.print(redact(channel.describe(package)), markup=False)
    if empty:
        out.print(empty, markup=False)


@app.command()
def show(run_id: int = run_id_argument("Run id (see `bisect history`)."),
         cache_dir: Optional[Path] = CacheDir, json_out: bool = AsJson,
         rerun: Optional[int] = typer.Option(None, "--rerun", metavar="SEQ", help="Run probe SEQ (the # column) "
                                             "again from the cache, offline; exits like `bisect check`.")) -> None:
    """Every probe of a run: version, outcome, exit, metrics, duration, reused or run."""
    from rich.table import Table

    from envbisect import report, report_sampling

    if rerun is not None:
        return _rerun(run_id, rerun, cache_dir, json_out)
    run_row, probes = open_run(cache_dir, run_id)
    if json_out:
        out.print(report.as_json(run_row, probes), markup=False)
        return
    result = run_row.get("result") or {}
    out.print(f"run {run_id} ({run_row['kind']}, {run_row['status']}): {run_row['recipe_path']}", markup=False)
    if result and run_row["kind"] == "bisect":
        out.print(report.headline(result), markup=False)
        for line in report.report_knobs.knob_lines(result, markdown=False):  # after `bisect narrow`
            out.print(line, markup=False)
    elif result and run_row["kind"] in report.COMBO_KINDS:  # the grid or the timeline and culprit
        for line in report.text_summary(result):
            out.print(line, markup=False)
    table, ref = Table(), result.get("reference")
    for col in ("#", "version", "outcome", "exit", "metrics", *(("outputs",) if ref else ()), "duration", "host",
                "source", "reason"):
        table.add_column(col)
    for r in report.probe_rows(probes, ref):
        table.add_row(f"{r['seq']}.{r['attempt']}", r["version"] or "", r["outcome"] + (" flaky" if r["flaky"] else ""),
                      r["exit"], r["metrics"], *((r["outputs"],) if ref else ()), r["duration"], r["host"], r["source"],
                      r["reason"])
    out.print(table)
    for line in report.hosts_lines(probes):
        out.print(f"host {line}", markup=False)
    for line in report_sampling.sampling_lines(result):  # --samples auto: samples and decision per probe
        out.print(line, markup=False)


def _rerun(run_id: int, seq: int, cache_dir: Path | None, json_out: bool) -> None:
    """``bisect show RUN --rerun SEQ``: re-check a recorded probe without the index."""
    from envbisect import report
    from envbisect.checks import rerun_probe
    from envbisect.session import Session

    settings = settings_for(cache_dir)
    with open_store(settings) as store, progress_for(json_out) as progress:
        result = rerun_probe(Session(settings, store, progress), run_id, seq, argv=[redact(a) for a in sys.argv[1:]])
    if json_out:
        print_json(result)
    else:
        again = result["rerun_of"]
        out.print(f"{result['outcome']}: {result['reason']}  (probe #{again['seq']} of run {again['run']}, "
                  f"{report.shown(again['version'])}: was {result['original_outcome']}; {result['environment']}; "
                  f"run {result['run_id']})", markup=False)
        if result["recipe_changed"]:
            out.print("note: the recipe changed since that run; this is the current recipe's answer", markup=False)
    raise typer.Exit(CHECK_EXIT.get(result["outcome"], EXIT_CHECK_ERROR))


def version_callback(value: bool) -> None:
    if value:
        out.print(f"envbisect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True),
          debug: bool = typer.Option(False, "--debug", envvar=crashlog.DEBUG_ENV,
                                     help="Print the traceback of an unexpected error instead of logging it.")) -> None:
    """Find the release that broke a numerical result."""
    crashlog.debug = debug


# Usage errors are click's ClickException, which newer Typer releases vendor: find the
# class through Typer's own BadParameter so both layouts work.
EXIT_INTERRUPTED = 130
_CLICK_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (a CI cancellation, ``timeout``, a closed SSH session):
    unwound like Ctrl-C, so the recipe is killed and the run left ``interrupted``. A
    BaseException so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the cleanup
    raise Terminated(signum)


def main() -> None:
    """Console entry point: one-line errors with their exit codes; 130 on Ctrl-C and
    128 + N on SIGTERM/SIGHUP, each leaving a resumable run."""
    reexec.harden()  # first: secrets out of this process's environment and argv (see reexec)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        code = app(standalone_mode=False)
    except Terminated as stop:
        err.print(f"interrupted by {signal.Signals(stop.signum).name}; run the same command again to resume "
                  "where it stopped", markup=False)
        sys.exit(128 + stop.signum)
    except _CLICK_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EnvbisectError as exc:
        err.print(f"error: {redact(str(exc))}", markup=False)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        code = EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line and a log, never a bare traceback
        if crashlog.debugging():
            raise
        err.print(crashlog.one_line(exc, crashlog.write(exc)), markup=False)
        sys.exit(crashlog.EXIT_BUG)
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into Exit(130) itself
        err.print("interrupted; run the same command again to resume where it stopped", markup=False)
    sys.exit(code if isinstance(code, int) else 0)


app.command()(history)
app.command("report")(report_cmd)
app.add_typer(watch_app, name="watch")
app.command()(attach)
app.command()(matrix)
app.command()(narrow)
