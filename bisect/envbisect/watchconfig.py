"""Read and validate ``bisect.toml``: the watches the daemon runs.

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

The whole file is validated before anything runs and every mistake is reported at once,
each with its key and line, so a daemon never starts half-configured.

Line numbers: :mod:`tomllib` returns plain dicts without positions, so lines are found
by scanning the text. The N-th ``[[watch]]`` header line (a regular expression that
ignores comments and whitespace) starts table N; a key's line is the first line inside
that table (up to the next ``[`` header) that assigns the key (bare or quoted). A
missing key is reported at its table's header line, a top-level mistake at the key's
line or line 1. TOML syntax errors come with tomllib's own line and column.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from envbisect.errors import ConfigError, EnvbisectError
from envbisect.recipes import load_recipe
from envbisect.trackers import IssueRef, parse_issue

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_CONFIG = "bisect.toml"
DEFAULT_EVERY_S = 6 * 3600.0
WATCH_KEYS = ("name", "recipe", "package", "with", "index-url", "issue", "every", "pre")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_HEADER = re.compile(r"^\s*\[\[\s*watch\s*\]\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")


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


@dataclass(frozen=True)
class Problem:
    """One mistake in the file: where it is and what to do about it."""

    line: int
    key: str
    message: str

    def render(self, source: str) -> str:
        return f"{source}:{self.line}: {self.key}: {self.message}"


def parse_duration(value: object) -> float:
    """``"6h"``, ``"1h30m"``, ``"90s"``, ``"2d"`` or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("is a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION.findall(text)
        if not parts or _DURATION.sub("", text).strip():
            raise ValueError(f"{value!r} is not a duration")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"{value!r} is not a duration")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


class _Lines:
    """Finds the line of a watch table or of a key inside it (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [i + 1 for i, line in enumerate(self.lines) if _HEADER.match(line)]

    def table(self, index: int) -> int:
        """The line of the ``index``-th ``[[watch]]`` header (1 when written inline)."""
        return self.headers[index] if index < len(self.headers) else 1

    def key(self, index: int | None, key: str) -> int:
        """The line assigning ``key`` in watch ``index`` (``None``: the top level)."""
        start = 0 if index is None else self.table(index)
        pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if _ANY_HEADER.match(line):
                break  # the table ended without assigning the key
            if pattern.match(line):
                return number
        return start or 1


def _suggest(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"


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

    def string(self, index: int, table: dict, key: str, *, required: bool = False) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                self.table_problem(index, f"missing required key {key!r}")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(index, key, f"must be a non-empty string, not {value!r}")
            return None
        return value.strip()

    def watch(self, index: int, table: object) -> WatchSpec | None:
        if not isinstance(table, dict):
            self.table_problem(index, "must be a table: write it as [[watch]] followed by key = value lines")
            return None
        for key in table:
            if key not in WATCH_KEYS:
                self.problem(index, key, f"unknown key; {_suggest(key, WATCH_KEYS)}")
        recipe_text = self.string(index, table, "recipe", required=True)
        package = self.string(index, table, "package")
        name = self.string(index, table, "name")
        index_url = self.string(index, table, "index-url")
        recipe = None
        if recipe_text:
            path = (self.base / recipe_text).resolve()
            try:
                recipe = load_recipe(path)
            except EnvbisectError as exc:
                self.problem(index, "recipe", str(exc))
        if name is not None and not _NAME.match(name):
            self.problem(index, "name", f"{name!r} may hold only letters, digits, '.', '-' and '_'")
            name = None
        package = package or (recipe.settings.package if recipe else None)
        if recipe is not None and not package:
            self.table_problem(index, "no package to watch: set package = \"...\" or package in the "
                                             "recipe's [tool.envbisect] table")
        with_ = self.with_(index, table.get("with"))
        if index_url is not None and not re.match(r"^(https?|file)://", index_url):
            self.problem(index, "index-url", f"{index_url!r} is not an http(s):// or file:// URL")
        issue = None
        if table.get("issue") is not None:
            issue_text = self.string(index, table, "issue")
            try:
                issue = parse_issue(issue_text) if issue_text else None
            except ConfigError as exc:
                self.problem(index, "issue", str(exc))
        every = DEFAULT_EVERY_S
        if "every" in table:
            try:
                every = parse_duration(table["every"])
            except ValueError as exc:
                self.problem(index, "every", f"{exc}; write e.g. \"30m\", \"6h\", \"1d\" or seconds")
        pre = table.get("pre", False)
        if not isinstance(pre, bool):
            self.problem(index, "pre", f"must be true or false, not {pre!r}")
        if recipe is None or not package:
            return None
        return WatchSpec(name or recipe.path.stem, recipe.path, package, with_, index_url, issue, every,
                         bool(pre), self.lines.table(index))

    def with_(self, index: int, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, list):
            self.problem(index, "with", f"must be a list of requirements, e.g. [\"numpy==1.26.4\"], not {value!r}")
            return ()
        out = []
        for item in value:
            try:
                if not isinstance(item, str):
                    raise InvalidRequirement(item)
                out.append(str(Requirement(item)))
            except InvalidRequirement:
                self.problem(index, "with", f"{item!r} is not a requirement; write e.g. \"numpy==1.26.4\"")
        return tuple(out)


def parse_config(text: str, *, base: Path, source: str = DEFAULT_CONFIG) -> list[WatchSpec]:
    """Validate the text of a ``bisect.toml``; :class:`ConfigError` lists every mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}; fix the syntax and start again") from None
    checker = _Checker(text, base)
    for key in data:
        if key != "watch":
            checker.problem(None, key, "unknown top-level key; bisect.toml holds only [[watch]] tables")
    watches = data.get("watch")
    specs: list[WatchSpec] = []
    if watches is None:
        checker.problems.append(Problem(1, "watch", "no [[watch]] table; add one with at least recipe = \"...\""))
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
    return specs


def load_config(path: Path) -> list[WatchSpec]:
    """Read and validate ``path``; recipes are relative to the file's directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no watch configuration at {path}; create it (see docs/watch.md) or pass --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; check the file or pass --config") from None
    return parse_config(text, base=path.parent.absolute(), source=str(path))
