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

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from envbisect.errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The reference regular expression from PEP 723.
_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")

#: Keys allowed in ``[tool.envbisect]``; anything else is a typo worth reporting.
_KNOWN_KEYS = {"package", "range", "timeout", "pre", "with", "python", "index-url", "regress",
               "nightly-index", "nightly-package", "variant", "env"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_TIMEOUT = 600.0


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


def read_block(text: str, where: str = "recipe") -> dict:
    """Return the parsed ``script`` metadata block of ``text`` (PEP 723)."""
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
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{where}: the PEP 723 block is not valid TOML ({exc}); fix the block") from exc


def _settings(table: object, where: str) -> RecipeSettings:
    if table is None:
        return RecipeSettings()
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: [tool.envbisect] must be a table; see recipes/README.md")
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise RecipeError(
            f"{where}: unknown key(s) in [tool.envbisect]: {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(_KNOWN_KEYS))}"
        )
    rng = table.get("range")
    if rng is not None:
        try:
            SpecifierSet(str(rng))
        except InvalidSpecifier as exc:
            raise RecipeError(
                f"{where}: [tool.envbisect] range {rng!r} is not a PEP 440 specifier; "
                "use something like '>=1.2,<2'"
            ) from exc
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise RecipeError(f"{where}: [tool.envbisect] timeout must be a positive number of seconds")
    with_ = table.get("with", [])
    if isinstance(with_, str):
        with_ = [with_]
    env = table.get("env", [])
    if not isinstance(env, list) or not all(isinstance(n, str) and _ENV_NAME.match(n) for n in env):
        raise RecipeError(f"{where}: [tool.envbisect] env must be a list of environment variable names, "
                          'e.g. env = ["ADDMM_RTOL"]')
    return RecipeSettings(
        package=table.get("package"),
        range=None if rng is None else str(rng),
        timeout=float(timeout),
        pre=bool(table.get("pre", False)),
        with_=tuple(str(w) for w in with_),
        python=table.get("python"),
        index_url=table.get("index-url"),
        regress=table.get("regress"),
        nightly_index=table.get("nightly-index"),
        nightly_package=table.get("nightly-package"),
        variant=table.get("variant"),
        env=tuple(dict.fromkeys(env)),
    )


def parse_recipe_text(text: str, path: Path) -> Recipe:
    """Parse recipe ``text`` (as read from ``path``)."""
    where = f"recipe {path}"
    meta = read_block(text, where)
    rp = meta.get("requires-python")
    try:
        requires_python = SpecifierSet(rp) if rp else None
    except InvalidSpecifier as exc:
        raise RecipeError(f"{where}: requires-python {rp!r} is not a valid specifier") from exc
    deps = []
    for dep in meta.get("dependencies", []) or []:
        try:
            deps.append(Requirement(dep))
        except InvalidRequirement as exc:
            raise RecipeError(f"{where}: dependency {dep!r} is not a valid requirement ({exc})") from exc
    settings = _settings((meta.get("tool") or {}).get("envbisect"), where)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Recipe(path, text, digest, requires_python, tuple(deps), settings)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe at ``path``; :class:`RecipeError` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist; pass the path of a recipe script such as recipes/fused_dense_relu.py")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
    return replace(parse_recipe_text(text, path.resolve()), given=str(path))
