"""Parse an ``/envbisect run`` issue comment into a request the daemon may run. Pure.

A request comment starts with the command line (the command and its options, on one
line), then anything (prose for the humans), and exactly one fenced PEP 723 recipe
(```` ```python ````)::

    /envbisect run --package planted --good 1.4 --bad 1.8
    ```python
    # /// script
    # dependencies = ["planted"]
    # ///
    import sys, planted
    sys.exit(0 if planted.VALUE == 1 else 1)
    ```

The options are parsed with click (the library under the CLI) against a whitelist: the
search options of ``bisect run`` that only change *what* is probed and how it is judged
(:data:`ALLOWED`). Everything that would change *where* code comes from or runs (index
URLs, interpreters, builds from source, the cache, executors) is refused, in options and
in the recipe's ``[tool.envbisect]`` table alike (:data:`RECIPE_FORBIDDEN`): those are the
daemon operator's choice, made in ``[[listen]]``. Every mistake is one
:class:`RequestInvalid` sentence that the daemon posts back as its answer.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
from packaging.specifiers import SpecifierSet

from envbisect.errors import ConfigError, EnvbisectError
from envbisect.policy import RegressMode, Threshold
from envbisect.recipes import Recipe, parse_recipe_text
from envbisect.requests_model import DepsMode, as_version, parse_with

COMMAND = "/envbisect run"
#: Options a request may set: the search and judging options of ``bisect run``.
ALLOWED = ("--package", "--range", "--good", "--bad", "--with", "--deps", "--find-fix", "--pre", "--timeout",
           "--regress", "--threshold", "--retries")
#: ``[tool.envbisect]`` keys a request's recipe may not set (RecipeSettings attributes).
RECIPE_FORBIDDEN = {"index_url": "index-url", "python": "python", "nightly_index": "nightly-index",
                    "nightly_package": "nightly-package", "variant": "variant", "env": "env",
                    "resources": "resources"}
MAX_RETRIES = 3
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[ \t]*\n"
                    r"(?P<code>.*?)^[ \t]*(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)


class RequestInvalid(ConfigError):
    """The comment is a request but cannot be run as written (the message says why)."""


@dataclass(frozen=True)
class RunRequest:
    """A parsed request: the options as given (``tokens``) and checked, and the recipe."""

    tokens: tuple[str, ...]
    recipe: Recipe
    package: str
    range: str | None = None
    good: str | None = None
    bad: str | None = None
    with_: tuple[str, ...] = ()
    deps: DepsMode = DepsMode.LATEST
    find_fix: bool = False
    pre: bool = False
    timeout: float | None = None
    regress: RegressMode | None = None
    thresholds: tuple[Threshold, ...] = ()
    retries: int = 0


def is_request(body: str | None) -> bool:
    """Whether a comment asks for a run: its first non-blank line starts with the command."""
    first = next((line.strip() for line in (body or "").splitlines() if line.strip()), "")
    return first == COMMAND or first.startswith(COMMAND + " ") or first.startswith(COMMAND + "\t")


def _command() -> click.Command:
    opt = click.Option
    return click.Command("/envbisect run", params=[
        opt(["--package", "-p"]), opt(["--range"]), opt(["--good"]), opt(["--bad"]),
        opt(["--with", "with_"], multiple=True), opt(["--deps"], default="latest"),
        opt(["--find-fix"], is_flag=True), opt(["--pre"], is_flag=True),
        opt(["--timeout"], type=click.FLOAT), opt(["--regress"]), opt(["--threshold"], multiple=True),
        opt(["--retries"], type=click.IntRange(0, MAX_RETRIES), default=0)])


def _split(text: str) -> list[str]:
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise RequestInvalid(f"the options cannot be read ({exc}); close every quote") from None
    for token in tokens:
        name = token.split("=", 1)[0]
        if re.match(r"^--?[A-Za-z]", name) and name not in (*ALLOWED, "-p"):
            raise RequestInvalid(f"{name} cannot be set by a request; a request may use {', '.join(ALLOWED)} "
                                 "(the index, interpreter and limits are the daemon's [[listen]] settings)")
    return tokens


def _recipe(code: str, path: Path) -> Recipe:
    try:
        recipe = parse_recipe_text(code, path)
    except EnvbisectError as exc:  # RecipeError: the block is missing or wrong
        raise RequestInvalid(str(exc)) from None
    set_here = [key for attr, key in RECIPE_FORBIDDEN.items() if getattr(recipe.settings, attr)]
    if set_here:
        raise RequestInvalid(f"the recipe's [tool.envbisect] sets {', '.join(set_here)}, which a request may not "
                             "set (the daemon's [[listen]] settings decide them); remove it")
    return recipe


def _check(value, convert, flag: str, choices: tuple[str, ...] = ()):
    """``convert(value)``; its failure as a :class:`RequestInvalid` naming ``flag``."""
    try:
        return convert(value)
    except ConfigError as exc:
        raise RequestInvalid(str(exc)) from None
    except ValueError:
        fix = f"use one of: {', '.join(choices)}" if choices else "see `bisect run --help`"
        raise RequestInvalid(f"{flag} {value!r} is not valid; {fix}") from None


def parse_request(body: str, path: Path) -> RunRequest:
    """The request in comment ``body``; its recipe is named ``path`` (where the daemon
    keeps it). :class:`RequestInvalid` names the first mistake and how to fix it."""
    if not is_request(body):
        raise RequestInvalid(f"the comment does not start with {COMMAND}")
    found = _FENCE.search(body)
    if found is None:
        raise RequestInvalid("no recipe: put the PEP 723 recipe in a ```python fenced block after the command")
    head = next(line for line in body.splitlines() if line.strip()).strip()[len(COMMAND):]
    if _FENCE.search(body, found.end()) is not None:
        raise RequestInvalid("more than one fenced block: a request holds exactly one recipe")
    tokens = _split(head)
    try:
        values = _command().make_context(COMMAND, list(tokens)).params
    except click.ClickException as exc:
        raise RequestInvalid(f"{exc.format_message()}; write options as `bisect run` takes them") from None
    recipe = _recipe(found["code"], path)
    package = values["package"] or recipe.settings.package
    if not package:
        raise RequestInvalid("no package to bisect: add --package NAME or package in the recipe's [tool.envbisect]")
    for flag in ("good", "bad"):
        if values[flag]:
            _check(values[flag], lambda v, f=flag: as_version(v, f"--{f}"), f"--{flag}")
    if values["range"]:
        _check(values["range"], SpecifierSet, "--range")
    _check(list(values["with_"]), parse_with, "--with")
    timeout = values["timeout"]
    if timeout is not None and not 0 < timeout < math.inf:
        raise RequestInvalid(f"--timeout {timeout:g} is not a positive number of seconds")
    regress = values["regress"]
    return RunRequest(
        tokens=tuple(tokens), recipe=recipe, package=package, range=values["range"], good=values["good"],
        bad=values["bad"], with_=tuple(values["with_"]),
        deps=_check(values["deps"], DepsMode, "--deps", tuple(m.value for m in DepsMode)),
        find_fix=values["find_fix"], pre=values["pre"], timeout=timeout,
        regress=_check(regress, RegressMode, "--regress", tuple(m.value for m in RegressMode)) if regress else None,
        thresholds=tuple(_check(t, Threshold.parse, "--threshold") for t in values["threshold"]),
        retries=values["retries"])
