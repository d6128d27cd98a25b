"""Options and helpers shared by the command modules (:mod:`envbisect.cli`,
:mod:`envbisect.cli_matrix`, :mod:`envbisect.cli_watch`): each option is declared once,
paired with its environment variable where it has one (as nox does).

Only typer, rich's console and light envbisect modules are imported here: every command
module imports this one, and ``bisect --help`` must not pay for the store (sqlite-utils),
the index client (requests) or the recipe schema (pydantic). Helpers import what they
need when called.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from envbisect.config import CACHE_ENV, CachePaths, Settings, default_cache_dir
from envbisect.compare import Tolerance
from envbisect.errors import ConfigError, RunNotFound

if TYPE_CHECKING:
    from envbisect.policy import RegressMode
    from envbisect.progress import Progress
    from envbisect.requests_model import DepsMode, Judging
    from envbisect.signatures import Signature
    from envbisect.store import Store

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

CacheDir = typer.Option(None, "--cache-dir", envvar=CACHE_ENV, help="State directory (default ./cache).")
IndexUrl = typer.Option(None, "--index-url", help="Package index (else UV_INDEX_URL / PIP_INDEX_URL / the public index).")
ExtraIndex = typer.Option([], "--extra-index-url", help="Additional index (repeatable).")
FindLinks = typer.Option([], "--find-links", help="Directory or page of distributions (repeatable).")
Python = typer.Option(None, "--python", envvar="ENVBISECT_PYTHON", help="Interpreter X.Y or path (never downloaded).")
DownloadPython = typer.Option(False, "--download-python", envvar="ENVBISECT_DOWNLOAD_PYTHON",
                              help="Let uv download a missing --python interpreter.")
Installer = typer.Option("uv", "--installer", envvar="ENVBISECT_INSTALLER", help="uv (default) or pip (virtualenv+pip).")
AsJson = typer.Option(False, "--json", help="Print one JSON object on stdout.")
Quiet = typer.Option(False, "--quiet", "-q", envvar="ENVBISECT_QUIET",
                     help="No progress on stderr (default: a live line on a terminal, one line per probe otherwise).")
# How a probe is run and judged: shared by run, check and matrix.
Timeout = typer.Option(None, "--timeout", help="Seconds per probe (default: the recipe's).")
Regress = typer.Option("exit", "--regress", help="exit (default) | error | crash: what counts as bad.")
Thresholds = typer.Option([], "--threshold", help="Judge by a metric, e.g. 'max_abs_diff>1e-3'.")
Retries = typer.Option(0, "--retries", min=0, help="Run each probe N more times; disagreement = flaky.")
NoReuse = typer.Option(False, "--no-reuse", help="Re-run probes recorded by earlier runs.")
AllowBuild = typer.Option(False, "--allow-build", help="Let the installer build sdist-only releases (slow).")
# Statistical verdicts for noisy metrics (envbisect.changepoint); None: the recipe's setting.
Metric = typer.Option(None, "--metric", help="With --samples auto: the $ENVBISECT_RESULT metric to sample.")
Samples = typer.Option(None, "--samples", help="auto: sample releases, each where it tells most, until the change is found at --confidence.")
Confidence = typer.Option(None, "--confidence", help="--samples auto: posterior probability the change must reach (default 0.99).")
MaxSamples = typer.Option(None, "--max-samples", help="--samples auto: most samples per release (default 10).")
Direction = typer.Option(None, "--direction", help="--samples auto: higher-is-worse | lower-is-worse | either.")
# Judging by outputs against a reference release, and by a failure signature (bisect run).
DivergeFrom = typer.Option(None, "--diverge-from", metavar="VERSION", help="Judge by the outputs the recipe writes "
                           "to $ENVBISECT_OUTPUTS: bad when one differs from VERSION's beyond --rtol/--atol.")
Rtol = typer.Option(None, "--rtol", help="An output matches when max |c-r|/|r| <= RTOL (default 1e-5) ...")
Atol = typer.Option(None, "--atol", help="... or max |c-r| <= ATOL (default 1e-8).")
FailureSignature = typer.Option(None, "--signature", metavar="REGEX", help="A bad outcome counts only when its "
                                "output matches REGEX; otherwise it is untestable.")
# Where and how many probes run at once.
Jobs = typer.Option(1, "--jobs", "-j", min=1, envvar="ENVBISECT_JOBS",
                    help="Probe up to K candidates at once (each round splits the range into K+1 parts).")
Executor = typer.Option("local", "--executor", envvar="ENVBISECT_EXECUTOR",
                        help="local (default): this machine | dask: the workers of --scheduler.")
Scheduler = typer.Option(None, "--scheduler", envvar="ENVBISECT_SCHEDULER",
                         help="Dask scheduler address for --executor dask, e.g. tcp://HOST:8786.")


def settings_for(cache_dir: Path | None, index_url=None, extra=(), find_links=(), python=None,
                 installer="uv", allow_build=False, reuse=True, download_python=False, prefetch: int = 2,
                 jobs: int = 1, executor: str = "local", scheduler: str | None = None) -> Settings:
    from envbisect import secrets
    from envbisect.index import IndexConfig

    paths = CachePaths((Path(cache_dir) if cache_dir else default_cache_dir()).absolute()).ensure()
    index = IndexConfig.resolve(secrets.environ(), index_url=index_url, extra_index_urls=list(extra),
                                find_links=list(find_links))
    return Settings(cache=paths, index=index, python=python, installer=installer, allow_build=allow_build,
                    reuse=reuse, download_python=download_python, prefetch=prefetch, jobs=jobs,
                    executor=executor, scheduler=scheduler)


def regress_mode(value: str) -> RegressMode:
    from envbisect.policy import RegressMode

    try:
        return RegressMode(value)
    except ValueError:
        raise ConfigError(f"--regress {value!r} is not a mode; use one of: "
                          f"{', '.join(m.value for m in RegressMode)}") from None


def deps_mode(value: str) -> DepsMode:
    from envbisect.requests_model import DepsMode

    try:
        return DepsMode(value)
    except ValueError:
        raise ConfigError(f"--deps {value!r} is not a mode; use latest or as-of-release") from None


def open_store(settings: Settings) -> Store:
    from envbisect.store import Store

    return Store(settings.cache.db)


def progress_for(json_out: bool, quiet: bool = False) -> Progress:
    """Progress on stderr: live on a terminal, one plain line per probe elsewhere (CI
    logs); nothing with ``-q``, nor with ``--json`` (its output is for programs)."""
    from envbisect.progress import Progress

    return Progress(err, enabled=not (json_out or quiet))


def judging_for(timeout: float | None, regress: str, thresholds: list[str], retries: int, recipe) -> Judging:
    """The judging settings from the shared options, falling back to the recipe's own."""
    from envbisect.policy import Threshold
    from envbisect.requests_model import Judging

    mode = regress if regress != "exit" else (recipe.settings.regress or "exit")
    if timeout is not None and not 0 < timeout < math.inf:  # inf, as a recipe's timeout: a hang would never end
        raise ConfigError(f"--timeout {timeout:g} is not a positive number of seconds; pass e.g. --timeout 600")
    return Judging(timeout or recipe.settings.timeout, regress_mode(mode), tuple(Threshold.parse(t) for t in thresholds),
                   retries)


def sampling_for(metric: str | None, samples: str | None, confidence: float | None, max_samples: int | None,
                 direction: str | None, recipe, *, retries: int, thresholds: list[str]):
    """The :class:`~envbisect.sampling.SamplingPlan` of ``--samples auto`` (flags over the
    recipe's ``[tool.envbisect]`` keys), or None; a conflicting setting is one error line."""
    from envbisect.sampling import DEFAULT_CONFIDENCE, DEFAULT_MAX_SAMPLES, Direction as Way, SamplingPlan

    own = recipe.settings
    mode = samples or own.samples
    if mode is None:
        given = [flag for flag, value in (("--metric", metric), ("--confidence", confidence),
                                          ("--max-samples", max_samples), ("--direction", direction)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only applies with --samples auto; add --samples auto")
        return None
    if mode != "auto":
        raise ConfigError(f"--samples {mode!r} is not a mode; use --samples auto (or leave it out)")
    if retries:
        raise ConfigError("--samples auto decides how many runs each probe gets; drop --retries")
    if thresholds:
        raise ConfigError("--samples auto judges the metric by where its level changes; drop --threshold")
    way = direction or own.direction or Way.EITHER.value
    try:
        way = Way(way)
    except ValueError:
        raise ConfigError(f"--direction {way!r} is not a direction; use higher-is-worse, lower-is-worse "
                          "or either") from None
    return SamplingPlan(metric or own.metric or "", confidence if confidence is not None else
                        (own.confidence or DEFAULT_CONFIDENCE), max_samples if max_samples is not None else
                        (own.max_samples or DEFAULT_MAX_SAMPLES), way)


def numerics_for(diverge_from: str | None, rtol: float | None, atol: float | None, signature: str | None,
                 recipe) -> tuple[str | None, Tolerance, Signature | None]:
    """The reference release, tolerances and failure signature from the flags, falling back
    to the recipe's table (:meth:`envbisect.requests_model.Numerics.of`)."""
    from envbisect.requests_model import Numerics

    found = Numerics.of(recipe, diverge_from, rtol, atol, signature)
    return found.diverge_from, found.tolerance, found.signature


def print_json(value) -> None:
    """Print one strict JSON document on stdout (credentials redacted, no NaN)."""
    from envbisect import report

    out.print(report.dumps(value, sort_keys=True), markup=False)


def _run_id(value: int) -> int:
    """A run id SQLite can hold (a larger number is simply not a run, not an overflow)."""
    if value is not None and not 0 < value < 2 ** 63:
        raise RunNotFound(f"no run {value}; run ids are positive numbers, list runs with `bisect history`")
    return value


def run_id_argument(help_text: str):
    """The RUN argument of ``show``, ``report`` and ``attach``."""
    return typer.Argument(..., help=help_text, callback=_run_id)
