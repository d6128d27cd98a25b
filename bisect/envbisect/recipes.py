"""Parse and validate a recipe: its PEP 723 block, its ``[tool.envbisect]`` table, its hash.

A recipe is a standalone script; everything envbisect needs to know about it lives in
the inline script metadata block (PEP 723), so the same file runs by hand with
``uv run recipe.py`` or ``python recipe.py``. This module only reads; it runs nothing.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from envbisect.errors import RecipeError
from envbisect.plainfile import read_named, what_is
from envbisect.schema import DEFAULT_TIMEOUT, EnvbisectTable, ScriptBlock
from envbisect.schema_issues import Issue, KeyLines, did_you_mean, keys_of, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The reference regular expression from PEP 723.
_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")

#: Keys allowed in ``[tool.envbisect]`` (the schema's); anything else is a typo worth reporting.
_KNOWN_KEYS = frozenset(keys_of(EnvbisectTable))
#: The largest recipe read (a repro script; anything larger is the wrong file).
RECIPE_MAX = 16 * 1024 * 1024


@dataclass(frozen=True)
class RecipeSettings:
    """The recipe's own defaults for a bisection (flags override each of them)."""

    package: str | None = None
    range: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    pre: bool = False
    with_: tuple[str, ...] = ()
    python: str | None = None
    index_url: str | None = None
    regress: str | None = None
    #: Where this package's nightlies live, for ``bisect run --nightlies`` (nightly.py).
    nightly_index: str | None = None
    nightly_package: str | None = None
    variant: str | None = None
    #: Environment variables the recipe reads (``env = ["ADDMM_RTOL"]``): their values
    #: are part of every probe's key, so changing one re-runs the probe.
    env: tuple[str, ...] = ()
    #: Never run two probes of this recipe at once on one host (a device it needs whole).
    exclusive: bool = False
    #: Abstract resources a probe needs (``{gpu = 1}``): a Dask worker must offer them, and
    #: on one host probes that need the same resource run one at a time.
    resources: tuple[tuple[str, float], ...] = ()
    #: ``--samples auto`` defaults (envbisect.sampling): metric, mode, confidence, cap, direction.
    metric: str | None = None
    samples: str | None = None
    confidence: float | None = None
    max_samples: int | None = None
    direction: str | None = None
    #: ``[tool.envbisect.knobs]``, normalised (:mod:`envbisect.schema_knobs`): what
    #: ``bisect narrow`` may flip besides the built-in knob sets.
    knobs: tuple[tuple[str, dict], ...] = ()
    #: Outputs compared with this release's (``--diverge-from``), and the tolerances.
    reference: str | None = None
    rtol: float | None = None
    atol: float | None = None
    #: A failure signature: a regex searched in the output tails, an exception class name.
    signature: str | None = None
    signature_exception: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``hash`` is the sha256 of the file's bytes: a probe is reused only
    for the very same recipe text."""

    path: Path
    text: str
    hash: str
    requires_python: SpecifierSet | None
    dependencies: tuple[Requirement, ...]
    settings: RecipeSettings = field(default_factory=RecipeSettings)
    #: The path as the user typed it, for "Reproduce with:" lines (``path`` is absolute).
    given: str = ""

    @property
    def shown(self) -> str:
        return self.given or str(self.path)

    @property
    def name(self) -> str:
        return self.path.stem

    def dependency_names(self) -> list[str]:
        return [canonicalize_name(r.name) for r in self.dependencies]

    def dependency(self, name: str) -> Requirement | None:
        """The recipe's requirement for ``name`` (canonicalised), if it declares one."""
        wanted = canonicalize_name(name)
        return next((r for r in self.dependencies if canonicalize_name(r.name) == wanted), None)


def _find_block(text: str, where: str) -> tuple[str, int]:
    """The TOML of the one ``script`` block of ``text``, and the file line its TOML starts on."""
    blocks = [m for m in _BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        raise RecipeError(
            f"{where} has no PEP 723 '# /// script' block; add one that lists its dependencies "
            "(see recipes/README.md for a template)"
        )
    if len(blocks) > 1:
        raise RecipeError(f"{where} has {len(blocks)} '# /// script' blocks; keep exactly one")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    return content, text.count("\n", 0, blocks[0].start("content")) + 1


def _load_toml(content: str, where: str, first_line: int = 1) -> dict:
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        # tomllib counts lines from the block's start; say the recipe file's line instead.
        said = re.sub(r"\bline (\d+)", lambda m: f"line {int(m.group(1)) + first_line - 1}", str(exc))
        raise RecipeError(f"{where}: the PEP 723 block is not valid TOML ({said}); fix the block") from exc


def read_block(text: str, where: str = "recipe") -> dict:
    """Return the parsed ``script`` metadata block of ``text`` (PEP 723)."""
    content, first_line = _find_block(text, where)
    return _load_toml(content, where, first_line)


def _describe(issues: list[Issue], lines: KeyLines, where: str) -> str:
    """Every issue of the block on one line, first by line: ``recipe X:LINE: KEY: what``."""
    found: list[tuple[int, str]] = []
    unknown = [i for i in issues if i.kind == "unknown"]
    for issue in issues:
        if issue.kind != "unknown":
            label = f"[{'.'.join(issue.table)}] {issue.key}" if issue.table else issue.key
            found.append((lines.key(issue.table, issue.key), f"{label}: {issue.message}"))
    if unknown:
        table = ".".join(unknown[0].table)
        names = []
        for issue in unknown:
            close = did_you_mean(issue.key, sorted(_KNOWN_KEYS))
            names.append(f"{issue.key} (did you mean {close!r}?)" if close else issue.key)
        line = min(lines.key(i.table, i.key) for i in unknown)
        found.append((line, f"unknown key(s) in [{table}]: {', '.join(names)}; "
                            f"known keys are {', '.join(sorted(_KNOWN_KEYS))}"))
    found.sort(key=lambda item: item[0])
    (line, first), rest = found[0], found[1:]
    return f"{where}:{line}: {first}" + "".join(f"; line {n}: {text}" for n, text in rest)


def _settings(table: EnvbisectTable | None) -> RecipeSettings:
    if table is None:
        return RecipeSettings()
    return RecipeSettings(
        package=table.package,
        range=table.range,
        timeout=float(table.timeout),
        pre=table.pre,
        with_=tuple(table.with_),
        python=table.python,
        index_url=table.index_url,
        regress=table.regress,
        nightly_index=table.nightly_index,
        nightly_package=table.nightly_package,
        variant=table.variant,
        env=tuple(dict.fromkeys(table.env)),
        exclusive=table.exclusive,
        resources=tuple(sorted(table.resources.items())),
        metric=table.metric, samples=table.samples, confidence=table.confidence, max_samples=table.max_samples,
        direction=table.direction,
        knobs=tuple(table.knobs.items()),
        reference=table.reference,
        rtol=table.rtol,
        atol=table.atol,
        signature=table.signature,
        signature_exception=table.signature_exception,
    )


def parse_recipe_text(text: str, path: Path) -> Recipe:
    """Parse recipe ``text`` (as read from ``path``). Every key is checked against the typed
    schema (:mod:`envbisect.schema`); a mistake is one :class:`RecipeError` line naming the
    file, the line, the key and the expected type."""
    where = f"recipe {path}"
    content, first_line = _find_block(text, where)
    block, issues = validate(ScriptBlock, _load_toml(content, where, first_line))
    if block is None:
        raise RecipeError(_describe(issues, KeyLines(content, first_line), where))
    requires_python = SpecifierSet(block.requires_python) if block.requires_python else None
    deps = tuple(Requirement(dep) for dep in block.dependencies)
    settings = _settings(block.tool.envbisect if block.tool is not None else None)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Recipe(path, text, digest, requires_python, deps, settings)


def shown_path(path: Path, cwd: Path | None = None) -> str:
    """How a recipe's path is printed in reproduce lines: relative when the recipe lies
    under the current directory (an absolute path would leak a home directory into an
    issue and fail on anyone else's machine), else as given."""
    cwd = (cwd or Path.cwd()).resolve()
    try:
        return Path(path).resolve().relative_to(cwd).as_posix()
    except ValueError:
        return str(path)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe at ``path``; :class:`RecipeError` says what is wrong."""
    path = Path(path)
    try:  # read as every file a user names is: a FIFO or device is refused, never waited on
        text = read_named(path, RECIPE_MAX).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        if not path.is_file():  # say what is there instead
            raise RecipeError(f"recipe file {path} {what_is(path)}; pass the path of a recipe script such as "
                              "recipes/fused_dense_relu.py") from None
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
    # Printed relative to the current directory when under it (see reproduce.shown_path).
    return replace(parse_recipe_text(text, path.resolve()), given=shown_path(path))
