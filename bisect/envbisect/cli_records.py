"""The commands that read what runs recorded: ``history``, ``report`` and ``cache``.

Read-only commands (``history``, ``show``, ``cache info``) never create a cache
directory or a results database: with nothing there, they say which directory they
read. ``history`` fits its terminal (80 columns without one): long cells are cut with an
ellipsis instead of wrapping into a column of single words.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from envbisect.cli_options import AsJson, CacheDir, err, out, print_json, run_id_argument, settings_for
from envbisect.config import CachePaths, default_cache_dir
from envbisect.errors import ConfigError, RunNotFound

if TYPE_CHECKING:
    from envbisect.store import Store

cache_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect and trim the cache directory.")

#: ``report --format`` values.
FORMATS = ("md", "json", "html")


def cache_paths(cache_dir: Path | None) -> CachePaths:
    """The cache directory's paths, without creating anything (:class:`CacheError` when
    something other than a directory is there)."""
    return CachePaths((Path(cache_dir) if cache_dir else default_cache_dir()).absolute()).usable()


def read_store(cache_dir: Path | None) -> Store | None:
    """The results database for reading, or None when there is none (nothing is created)."""
    from envbisect.store import Store

    paths = cache_paths(cache_dir)
    return Store(paths.db) if paths.db.is_file() else None


def open_run(cache_dir: Path | None, run_id: int) -> tuple[dict, list[dict]]:
    """A recorded run and its probe rows; :class:`RunNotFound` names the database read."""
    store = read_store(cache_dir)
    if store is None:
        paths = cache_paths(cache_dir)
        raise RunNotFound(f"no run {run_id}: no results database in {paths.root} (nothing recorded there yet); "
                          "pass --cache-dir with the directory your runs used")
    with store:
        return store.get_run(run_id), store.probes_for_run(run_id)


def history(cache_dir: Optional[Path] = CacheDir, limit: int = typer.Option(20, "--limit"),
            json_out: bool = AsJson) -> None:
    """List recorded runs, newest first."""
    from rich.table import Table

    from envbisect import report

    store = read_store(cache_dir)
    runs = []
    if store is not None:
        with store:
            runs = store.list_runs(limit)
    if json_out:
        print_json(runs)
        return
    if not runs:
        out.print(f"no runs recorded in {cache_paths(cache_dir).db}", markup=False)
        return
    rows = []
    for r in runs:
        result = r.get("result") or {}
        answer = (report.headline(result) if r["kind"] in ("bisect", "narrow", *report.COMBO_KINDS) and result
                  else result.get("outcome", ""))
        rows.append([str(r["id"]), r["kind"], Path(r["recipe_path"]).name, r.get("package") or "", r["status"],
                     answer, str(r.get("probe_count", "")), (r.get("started_at") or "")[5:16].replace("T", " ")])
    header = ["run", "kind", "recipe", "package", "status", "answer", "probes", "started"]
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    for name, width in zip(header, column_widths(header, rows, out.width)):
        table.add_column(name, width=width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    out.print(table, soft_wrap=False, markup=False)


#: The narrowest the columns that give way may get; the others keep their content's width.
_SHRINKABLE = {"answer": 12, "recipe": 8, "package": 8}


def column_widths(header: list[str], rows: list[list[str]], total: int) -> list[int]:
    """Widths that fit ``total`` columns (two spaces between columns): every column its
    content's width, then, while too wide, the widest of answer, recipe and package
    gives a column (down to their minimums). What does not fit is cut with an ellipsis,
    never wrapped."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    room = total - 2 * (len(header) - 1)
    shrinkable = [i for i, h in enumerate(header) if h in _SHRINKABLE]
    while sum(widths) > room:
        i = max(shrinkable, key=lambda j: widths[j] - _SHRINKABLE[header[j]])
        if widths[i] <= _SHRINKABLE[header[i]]:
            break  # a very narrow terminal: rich cuts what is left
        widths[i] -= 1
    return widths


def report_cmd(run_id: int = run_id_argument("Run id."),
               fmt: str = typer.Option("md", "--format", help="md (Markdown, fit to paste in an issue) | html "
                                       "(one standalone page with the chart as SVG) | json"),
               output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write to a file."),
               cache_dir: Optional[Path] = CacheDir) -> None:
    """Render a run as Markdown (fit to paste in an issue), a standalone HTML page, or JSON."""
    from envbisect import report

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not supported; use one of: {', '.join(FORMATS)}")
    run_row, probes = open_run(cache_dir, run_id)
    render = {"md": report.markdown, "json": report.as_json, "html": report.html_page}[fmt]
    text = render(run_row, probes)
    if output:
        report.write(text, output)
        err.print(f"wrote {output} ({len(text.encode())} bytes)", markup=False)
    else:
        out.print(text, markup=False, soft_wrap=True)


@cache_app.command("info")
def cache_info(cache_dir: Optional[Path] = CacheDir, json_out: bool = AsJson) -> None:
    """What the cache holds and how big each part is (hardlinked files counted once)."""
    from envbisect.cachemgr import cache_info as info

    paths = cache_paths(cache_dir)
    data = info(paths)
    if json_out:
        print_json(data)
        return
    if not data["exists"]:
        out.print(f"cache directory {paths.root} does not exist: nothing cached there yet", markup=False)
        return
    for key, value in data.items():
        if key != "exists":
            out.print(f"{key}: {value}", markup=False)


@cache_app.command("prune")
def cache_prune(max_size: str = typer.Option(..., "--max-size", help="e.g. 2GB, 500MB"),
                cache_dir: Optional[Path] = CacheDir) -> None:
    """Shrink the cache to --max-size: leftover scratch directories, then least-recently-used
    environments (those in use are kept), then the installer cache if still needed."""
    from envbisect.cachemgr import human, parse_size, prune

    limit = parse_size(max_size)
    paths = cache_paths(cache_dir)
    if not paths.root.is_dir():
        out.print(f"cache directory {paths.root} does not exist: nothing to prune", markup=False)
        return
    done = prune(settings_for(cache_dir).cache, limit)
    out.print(f"removed {done['leftovers_removed']} leftover scratch or half-built director(ies)", markup=False)
    out.print(f"removed {len(done['environments_removed'])} environment(s), least recently used first"
              + (f": {', '.join(k[:12] for k in done['environments_removed'])}" if done["environments_removed"] else ""),
              markup=False)
    if done["installer_cache_cleaned"]:
        out.print("cleaned the installer (uv) cache: environments alone could not reach the size", markup=False)
    out.print(f"cache {human(done['size_before'])} -> {human(done['size_after'])} (limit {human(limit)})", markup=False)
    if not done["fits"]:
        kept = len(done["environments_kept_in_use"])
        out.print(f"still above the limit: {kept} environment(s) in use and the results database "
                  f"({human(done['database_size'])}) are kept; `bisect cache clear --all` removes the results too",
                  markup=False)


@cache_app.command("clear")
def cache_clear(cache_dir: Optional[Path] = CacheDir,
                keep_results: bool = typer.Option(True, "--keep-results/--all",
                                                  help="Keep results.db (default) or delete it too.")) -> None:
    """Delete environments, installer cache, index cache and logs (results kept unless --all)."""
    from envbisect.cachemgr import clear

    removed = clear(settings_for(cache_dir).cache, keep_results=keep_results)
    out.print(f"cleared: {', '.join(removed) or 'nothing'}", markup=False)
