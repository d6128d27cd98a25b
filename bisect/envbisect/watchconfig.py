"""Read and validate ``bisect.toml``: the watches the daemon runs (and the repositories
it listens on, ``[[listen]]``, checked by :mod:`envbisect.listenconfig`).

Every ``[[watch]]`` table names a recipe, the package whose releases to watch, and
optionally pins, an index, an issue and an interval::

    [[watch]]
    name = "metal-fused-dense"        # optional, defaults to the recipe's stem
    recipe = "recipes/fused_dense_relu.py"
    package = "tensorflow-metal"      # optional when the recipe's [tool.envbisect] names one
    with = ["tensorflow"]
    index-url = "https://..."
    issue = "owner/repo#123"
    every = "6h"
    pre = false                       # optional: watch pre-releases and nightlies too
    batch-probes = 4                  # optional: releases of one batch probed directly

    [executor]                        # optional: where the daemon's probes run
    kind = "dask"                     # "local" (default) or "dask"
    scheduler = "tcp://HOST:8786"     # for kind = "dask"
    jobs = 3                          # probes per round (default 1)
    prefetch = 2                      # envs built ahead per probe slot (default 2)

The whole file is validated before anything runs and every mistake is reported at once,
each with its key and line, so a daemon never starts half-configured.

Each table is checked against :class:`envbisect.schema.WatchTable`, the same typed schema
(strict types, no unknown keys) whose field types a recipe's ``[tool.envbisect]`` uses
where the keys overlap (``package``, ``with``'s requirements, ``index-url``, ``pre``).

Line numbers: :mod:`tomllib` returns plain dicts without positions, so lines are found
by scanning the text (:class:`envbisect.schema_issues.KeyLines`). The N-th ``[[watch]]`` header
line (a regular expression that ignores comments and whitespace) starts table N; a key's
line is the first line inside that table (up to the next ``[`` header) that assigns the
key (bare or quoted). A missing key is reported at its table's header line, a top-level
mistake at the key's line or line 1. TOML syntax errors come with tomllib's own line and
column.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from envbisect.errors import ConfigError, EnvbisectError, error_reason
from envbisect.listenconfig import ListenSpec, check_listens
from envbisect.plainfile import read_named
from envbisect.recipes import load_recipe
from envbisect.schema import DEFAULT_EVERY_S, ExecutorTable, WatchTable, parse_duration
from envbisect.schema_issues import KeyLines, did_you_mean, keys_of, validate
from envbisect.trackers import IssueRef, parse_issue
from envbisect.watchplan import DEFAULT_BATCH_PROBES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_CONFIG", "DEFAULT_EVERY_S", "WATCH_KEYS", "Problem", "WatchSpec", "load_config",
           "parse_config", "parse_duration"]

DEFAULT_CONFIG = "bisect.toml"
#: The largest configuration read (a FIFO or device named by --config is never read).
CONFIG_MAX = 1024 * 1024
WATCH_KEYS = keys_of(WatchTable)


@dataclass(frozen=True)
class WatchSpec:
    """One validated watch."""

    name: str
    recipe: Path  # absolute
    package: str
    with_: tuple[str, ...] = ()
    index_url: str | None = None
    issue: IssueRef | None = None
    every_s: float = DEFAULT_EVERY_S
    pre: bool = False
    line: int = 0  # the [[watch]] header line, for messages
    batch_probes: int = DEFAULT_BATCH_PROBES  # see envbisect.watchplan


@dataclass(frozen=True)
class Problem:
    """One mistake in the file: where it is and what to do about it."""

    line: int
    key: str
    message: str

    def render(self, source: str) -> str:
        return f"{source}:{self.line}: {self.key}: {self.message}"


class _Lines:
    """Finds the line of a watch table or of a key inside it (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.lines = KeyLines(text)

    def table(self, index: int) -> int:
        """The line of the ``index``-th ``[[watch]]`` header (1 when written inline)."""
        return self.lines.table(("watch",), index) or 1

    def key(self, index: int | None, key: str) -> int:
        """The line assigning ``key`` in watch ``index`` (``None``: the top level)."""
        if index is None:
            return self.lines.key((), key)
        return self.lines.key(("watch",), key, index)


def _suggest(key: str, known: tuple[str, ...]) -> str:
    close = did_you_mean(key, known)
    return f"did you mean {close!r}?" if close else f"known keys: {', '.join(known)}"


class _Checker:
    """Validates one parsed file, collecting every problem instead of stopping at the first."""

    def __init__(self, text: str, base: Path) -> None:
        self.lines = _Lines(text)
        self.base = base
        self.problems: list[Problem] = []

    def problem(self, index: int | None, key: str, message: str) -> None:
        """A mistake at ``key`` of watch ``index`` (``None``: top level), on the key's line."""
        label = key if index is None else f"watch[{index + 1}].{key}"
        self.problems.append(Problem(self.lines.key(index, key), label, message))

    def table_problem(self, index: int, message: str) -> None:
        """A mistake of a whole watch table (a missing key), on its header line."""
        self.problems.append(Problem(self.lines.table(index), f"watch[{index + 1}]", message))

    def typed(self, index: int, table: dict) -> WatchTable | None:
        """The table checked against the schema, every issue recorded. When some keys are
        wrong the others are still returned (checked), so the recipe and the rest of the
        table are checked too and every mistake is reported at once."""
        checked, issues = validate(WatchTable, table)
        if checked is not None:
            return checked
        wrong = set()
        for issue in issues:
            wrong.add(issue.key)
            if issue.kind == "unknown":
                self.problem(index, issue.key, f"unknown key; {_suggest(issue.key, WATCH_KEYS)}")
            elif issue.kind == "missing":
                self.table_problem(index, issue.message)
            else:
                self.problem(index, issue.key, issue.message)
        checked, _ = validate(WatchTable, {k: v for k, v in table.items() if k not in wrong})
        return checked

    def executor(self, table: object) -> ExecutorTable:
        """``[executor]`` checked (every mistake recorded); the defaults when it is wrong."""
        if not isinstance(table, dict):
            self.problem(None, "executor", "must be a table: write [executor] followed by key = value lines")
            return ExecutorTable()
        checked, issues = validate(ExecutorTable, table)
        for issue in issues:
            hint = f"; {_suggest(issue.key, keys_of(ExecutorTable))}" if issue.kind == "unknown" else ""
            self.problem(None, "executor", f"{issue.key}: {issue.message}{hint}")
        if checked is not None and checked.kind == "dask" and not checked.scheduler:
            self.problem(None, "executor", "kind = \"dask\" needs scheduler = \"tcp://HOST:8786\"")
        return checked or ExecutorTable()

    def watch(self, index: int, table: object) -> WatchSpec | None:
        if not isinstance(table, dict):
            self.table_problem(index, "must be a table: write it as [[watch]] followed by key = value lines")
            return None
        checked = self.typed(index, table)
        if checked is None:  # no usable recipe key: nothing more to check
            return None
        recipe = None
        try:
            recipe = load_recipe((self.base / checked.recipe).resolve())
        except EnvbisectError as exc:
            self.problem(index, "recipe", str(exc))
        package = checked.package or (recipe.settings.package if recipe else None)
        if recipe is not None and not package:
            self.table_problem(index, "no package to watch: set package = \"...\" or package in the "
                                             "recipe's [tool.envbisect] table")
        issue = None
        if checked.issue is not None:
            try:
                issue = parse_issue(checked.issue)
            except ConfigError as exc:
                self.problem(index, "issue", str(exc))
        if recipe is None or not package:
            return None
        with_ = tuple(str(Requirement(item)) for item in checked.with_)
        return WatchSpec(checked.name or recipe.path.stem, recipe.path, package, with_, checked.index_url, issue,
                         checked.every, checked.pre, self.lines.table(index), checked.batch_probes)


def parse_config(text: str, *, base: Path, source: str = DEFAULT_CONFIG) -> list[WatchSpec]:
    """Validate the text of a ``bisect.toml``; :class:`ConfigError` lists every mistake."""
    return parse_file(text, base=base, source=source)[0]


def parse_file(text: str, *, base: Path, source: str = DEFAULT_CONFIG) -> tuple[list[WatchSpec], ExecutorTable]:
    """The watches and the ``[executor]`` table (defaults when absent) of a ``bisect.toml``."""
    specs, executor, _listens = parse_daemon(text, base=base, source=source)
    return specs, executor


def parse_daemon(text: str, *, base: Path, source: str = DEFAULT_CONFIG
                 ) -> tuple[list[WatchSpec], ExecutorTable, list[ListenSpec]]:
    """Everything the daemon runs: watches, ``[executor]`` and ``[[listen]]`` tables."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}; fix the syntax and start again") from None
    checker = _Checker(text, base)
    for key in data:
        if key not in ("watch", "executor", "listen"):
            checker.problem(None, key, "unknown top-level key; bisect.toml holds [[watch]] and [[listen]] tables "
                            "and an optional [executor] table")
    executor = checker.executor(data.get("executor", {}))
    listens, listen_problems = check_listens(data.get("listen", []), checker.lines.lines)
    checker.problems += [Problem(*p) for p in listen_problems]
    watches = data.get("watch")
    specs: list[WatchSpec] = []
    if watches is None and "listen" in data:
        pass  # a daemon that only listens on issues
    elif watches is None:
        checker.problems.append(Problem(1, "watch", "no [[watch]] table; add one with at least recipe = \"...\" "
                                        "(or a [[listen]] table)"))
    elif not isinstance(watches, list):
        checker.problem(None, "watch", "must be an array of tables: write [[watch]], not [watch] or watch = ...")
    else:
        for index, table in enumerate(watches):
            spec = checker.watch(index, table)
            if spec is not None:
                specs.append(spec)
    seen: dict[str, WatchSpec] = {}
    for spec in specs:
        if spec.name in seen:
            checker.problems.append(Problem(spec.line, "name", f"watch name {spec.name!r} is used twice (also at "
                                            f"line {seen[spec.name].line}); give each watch its own name"))
        seen.setdefault(spec.name, spec)
    if checker.problems:
        ordered = sorted(checker.problems, key=lambda p: p.line)
        lines = "\n".join("  " + p.render(source) for p in ordered)
        raise ConfigError(f"{source} has {len(ordered)} mistake(s); fix them and start again:\n{lines}")
    return specs, executor, listens


def load_config(path: Path) -> list[WatchSpec]:
    """Read and validate ``path``; recipes are relative to the file's directory."""
    return load_file(path)[0]


def load_file(path: Path) -> tuple[list[WatchSpec], ExecutorTable]:
    """Read and validate ``path``: its watches and its ``[executor]`` table."""
    specs, executor, _listens = load_daemon(path)
    return specs, executor


def load_daemon(path: Path) -> tuple[list[WatchSpec], ExecutorTable, list[ListenSpec]]:
    """Read and validate ``path``: its watches, ``[executor]`` and ``[[listen]]`` tables."""
    try:
        text = read_named(path, CONFIG_MAX).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no watch configuration at {path}; create it (see docs/watch.md) or pass --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {error_reason(exc)}; check the file or pass --config") from None
    return parse_daemon(text, base=path.parent.absolute(), source=str(path))
