"""One typed schema for envbisect's settings files: a recipe's PEP 723 block (with its
``[tool.envbisect]`` table) and the ``[[watch]]`` tables of ``bisect.toml``.

The tables are pydantic v2 models in strict mode: a value of the wrong TOML type is an
error, never coerced (``pre = "false"`` is refused, not taken as true; ``python = 3.11``
is refused, not turned into ``"3.11"``), and an unknown key is an error (``extra =
"forbid"``) so a typo surfaces at once. Where the two files share a key (``package``,
``with``'s requirement strings, ``pre``, ``index-url``) both use the same field type, so
they accept and refuse the same values with the same words. The one difference is on
purpose: a recipe's ``with`` may be a single string (recipes/README.md), a watch's must
be a list.

Validation errors become :class:`Issue` records (the path of keys at fault and one
sentence naming the expected type); :class:`KeyLines` finds the line of a key in the TOML
text, because :mod:`tomllib` keeps no positions. The callers (:mod:`envbisect.recipes`,
:mod:`envbisect.watchconfig`) turn both into their own one-line errors.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar, get_args

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
)
from pydantic.fields import FieldInfo

from envbisect.policy import RegressMode
from envbisect.schema_knobs import KnobsField
from envbisect.watchplan import DEFAULT_BATCH_PROBES
from envbisect.signatures import check_exception, check_regex

DEFAULT_TIMEOUT = 600.0
DEFAULT_EVERY_S = 6 * 3600.0

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WATCH_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


# ------------------------------------------------------------------ value checks


def _first_line(exc: Exception) -> str:
    """packaging's parser errors span several lines (a caret under the input)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"{value!r} is not a PEP 440 specifier; use something like '>=1.2,<2'") from None
    return value


def _python_specifier(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None  # an empty requires-python says nothing, as before
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"{value!r} is not a valid specifier; write e.g. \">=3.10\"") from None
    return value


def _requirement(value: str) -> str:
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        raise ValueError(f"{value!r} is not a requirement ({_first_line(exc)}); "
                         "write e.g. \"numpy==1.26.4\"") from None
    return value


def _url(value: str) -> str:
    if not re.match(r"^(https?|file)://", value):
        raise ValueError(f"{value!r} is not an http(s):// or file:// URL")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name; write e.g. env = [\"ADDMM_RTOL\"]")
    return value


def _resource_name(value: str) -> str:
    if not _WATCH_NAME.match(value):
        raise ValueError(f"{value!r} is not a resource name; use letters, digits, '.', '-' and '_', e.g. gpu")
    return value


def _regress(value: str) -> str:
    try:
        return RegressMode(value).value
    except ValueError:
        raise ValueError(f"{value!r} is not a mode; use one of: "
                         f"{', '.join(m.value for m in RegressMode)}") from None


def _watch_name(value: str) -> str:
    if not _WATCH_NAME.match(value):
        raise ValueError(f"{value!r} may hold only letters, digits, '.', '-' and '_'")
    return value


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


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; write e.g. \"30m\", \"6h\", \"1d\" or seconds") from None


def _listify(value: object) -> object:
    return [value] if isinstance(value, str) else value


# ------------------------------------------------------------------ field types
# Each type carries its expected-type phrase (the description), used in error messages.

#: A non-empty string, surrounding whitespace dropped.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
#: One PEP 508 requirement, kept as written.
RequirementText = Annotated[Text, AfterValidator(_requirement)]
IndexUrlText = Annotated[Text, AfterValidator(_url)]

PackageField = Annotated[Optional[Text], Field(description='a package name string, e.g. "numpy"')]
RangeField = Annotated[Optional[Annotated[Text, AfterValidator(_specifier)]],
                       Field(description='a PEP 440 specifier string, e.g. ">=1.2,<2"')]
TimeoutField = Annotated[float, Field(gt=0, allow_inf_nan=False,
                                      description="a positive number of seconds, e.g. 600")]
PreField = Annotated[bool, Field(description="true or false")]
PinsField = Annotated[list[RequirementText],
                      Field(description='a list of requirement strings, e.g. ["numpy==1.26.4"]')]
#: A recipe's ``with`` may also be one string (recipes/README.md documents "string or list").
RecipePinsField = Annotated[list[RequirementText], BeforeValidator(_listify),
                            Field(description='a requirement string or a list of them, e.g. ["numpy==1.26.4"]')]
PythonField = Annotated[Optional[Text], Field(description='a Python version string, e.g. "3.11"')]
IndexUrlField = Annotated[Optional[IndexUrlText],
                          Field(description='a URL string, e.g. "https://pypi.org/simple"')]
RegressField = Annotated[Optional[Annotated[Text, AfterValidator(_regress)]],
                         Field(description='one of the strings "exit", "error" or "crash"')]
EnvField = Annotated[list[Annotated[str, AfterValidator(_env_name)]],
                     Field(description='a list of environment variable names, e.g. ["ADDMM_RTOL"]')]
ExclusiveField = Annotated[bool, Field(description="true or false")]
#: Dask-style abstract resources a probe needs (``{gpu = 1}``, ``{metal = 1}``).
ResourcesField = Annotated[dict[Annotated[str, AfterValidator(_resource_name)],
                                Annotated[float, Field(gt=0, allow_inf_nan=False)]],
                           Field(description='a table of resource names to positive amounts, e.g. {gpu = 1}')]


ToleranceField = Annotated[Optional[float], Field(ge=0, allow_inf_nan=False, description="a number >= 0, e.g. 1e-5")]
SignatureField = Annotated[Optional[Annotated[Text, AfterValidator(check_regex)]],
                           Field(description='a regular expression string, e.g. "shape mismatch"')]
ExceptionField = Annotated[Optional[Annotated[Text, AfterValidator(check_exception)]],
                           Field(description='an exception class name string, e.g. "ValueError"')]


class _Table(BaseModel):
    """A settings table: strict types, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class EnvbisectTable(_Table):
    """``[tool.envbisect]`` in a recipe's PEP 723 block (recipes/README.md lists the keys)."""

    package: PackageField = None
    range: RangeField = None
    timeout: TimeoutField = DEFAULT_TIMEOUT
    pre: PreField = False
    with_: RecipePinsField = Field(default=[], alias="with")
    python: PythonField = None
    index_url: IndexUrlField = Field(default=None, alias="index-url")
    regress: RegressField = None
    nightly_index: IndexUrlField = Field(default=None, alias="nightly-index")
    nightly_package: PackageField = Field(default=None, alias="nightly-package")
    variant: Annotated[Optional[Text], Field(description='a variant string, e.g. "cpu" or "cu126"')] = None
    env: EnvField = []
    exclusive: ExclusiveField = False
    resources: ResourcesField = {}
    # --samples auto (envbisect.sampling): the flags' defaults for this recipe.
    metric: Annotated[Optional[Text], Field(description='a metric name string, e.g. "step_time"')] = None
    samples: Annotated[Optional[Literal["auto"]], Field(description='the string "auto"')] = None
    confidence: Annotated[Optional[float], Field(gt=0.5, lt=1, description="a number between 0.5 and 1, e.g. 0.99")] = None
    max_samples: Annotated[Optional[int], Field(ge=3, description="a whole number of at least 3, e.g. 10")] = \
        Field(default=None, alias="max-samples")
    direction: Annotated[Optional[Literal["either", "higher-is-worse", "lower-is-worse"]],
                         Field(description='"higher-is-worse", "lower-is-worse" or "either"')] = None
    knobs: KnobsField = {}  # bisect narrow's knobs (schema_knobs)
    reference: Annotated[Optional[Text], Field(description='a release version string, e.g. "2.15.0"')] = None
    rtol: ToleranceField = None
    atol: ToleranceField = None
    signature: SignatureField = None
    signature_exception: ExceptionField = Field(default=None, alias="signature-exception")


class ToolTable(BaseModel):
    """PEP 723's ``[tool]`` table: other tools' tables are theirs to judge."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    envbisect: Annotated[Optional[EnvbisectTable],
                         Field(description="a table: write [tool.envbisect] followed by key = value lines")] = None


class ScriptBlock(BaseModel):
    """A PEP 723 ``script`` block (keys this module does not know are left alone)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    requires_python: Annotated[Optional[Annotated[str, AfterValidator(_python_specifier)]],
                               Field(alias="requires-python",
                                     description='a specifier string, e.g. ">=3.10"')] = None
    dependencies: Annotated[list[RequirementText],
                            Field(description='a list of requirement strings, e.g. ["numpy>=1.26"]')] = []
    tool: Annotated[Optional[ToolTable], Field(description="a table of per-tool tables")] = None


class WatchTable(_Table):
    """One ``[[watch]]`` table of ``bisect.toml`` (docs/watch.md)."""

    name: Annotated[Optional[Annotated[Text, AfterValidator(_watch_name)]],
                    Field(description='a name string of letters, digits, ".", "-" and "_"')] = None
    recipe: Annotated[Text, Field(description="a path string, relative to bisect.toml")]
    package: PackageField = None
    with_: PinsField = Field(default=[], alias="with")
    index_url: IndexUrlField = Field(default=None, alias="index-url")
    issue: Annotated[Optional[Text], Field(description='an issue string, e.g. "owner/repo#123"')] = None
    every: Annotated[float, PlainValidator(_duration),
                     Field(description='a duration such as "6h" or a number of seconds')] = DEFAULT_EVERY_S
    pre: PreField = False
    batch_probes: Annotated[int, Field(ge=1, alias="batch-probes",
                                       description="a whole number of at least 1")] = DEFAULT_BATCH_PROBES


class ExecutorTable(_Table):
    """``[executor]`` of ``bisect.toml``: where and how many probes the daemon runs at once
    (the ``--executor``/``--scheduler``/``--jobs``/``--prefetch`` of ``bisect run``)."""

    kind: Annotated[Literal["local", "dask"], Field(description='"local" or "dask"')] = "local"
    scheduler: Annotated[Optional[Text], Field(description='a scheduler address string, e.g. "tcp://host:8786"')] = None
    jobs: Annotated[int, Field(ge=1, description="a whole number of at least 1")] = 1
    prefetch: Annotated[int, Field(ge=0, description="a whole number, 0 or more")] = 2


# ------------------------------------------------------------------ errors


@dataclass(frozen=True)
class Issue:
    """One validation error: the keys from the document root to the key at fault
    (``("tool", "envbisect", "python")``), what kind it is, and one sentence."""

    path: tuple[str, ...]
    kind: str  # "unknown" (a key the table does not have), "missing" (a required key), "invalid"
    message: str

    @property
    def key(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def table(self) -> tuple[str, ...]:
        return self.path[:-1]


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Mapping[str, Any]) -> tuple[M | None, list[Issue]]:
    """``data`` as a ``model``, or None and every issue found (none is raised)."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [_issue(model, error) for error in exc.errors(include_url=False)]


def keys_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys a table model accepts, as written in the file, in declaration order."""
    return tuple(info.alias or name for name, info in model.model_fields.items())


def did_you_mean(key: str, known: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(key, list(known), n=1)
    return close[0] if close else None


def _field(model: type[BaseModel], path: tuple[str, ...]) -> FieldInfo | None:
    info: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for key in path:
        if current is None:
            return None
        info = next((f for n, f in current.model_fields.items() if (f.alias or n) == key), None)
        if info is None:
            return None
        current = next((a for a in (info.annotation, *get_args(info.annotation))
                        if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return info


_TOML_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
               (list, "an array"), (dict, "a table"), (dt.datetime, "a date-time"), (dt.date, "a date"),
               (dt.time, "a time"))
_WANTED = {"string_type": "a string", "string_too_short": "a non-empty string", "bool_type": "a boolean",
           "int_type": "an integer", "float_type": "a number", "list_type": "an array",
           "dict_type": "a table", "model_type": "a table"}


def toml_kind(value: object) -> str:
    """What a parsed TOML value is, in TOML's words ("a float", "an array")."""
    return next((word for kind, word in _TOML_KINDS if isinstance(value, kind)), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _issue(model: type[BaseModel], error: Mapping[str, Any]) -> Issue:
    keys: list[str] = []
    item: int | None = None
    for part in error["loc"]:
        if isinstance(part, int):
            item = part
            break
        keys.append(str(part))
    path, kind, value = tuple(keys), error["type"], error.get("input")
    if kind == "extra_forbidden":
        return Issue(path, "unknown", "unknown key")
    if kind == "missing":
        return Issue(path, "missing", f"missing required key {path[-1]!r}")
    if kind in ("value_error", "assertion_error"):
        return Issue(path, "invalid", str(error["ctx"]["error"]))
    # A value inside a table-valued key ({gpu = 0}): the key's own description says it.
    info = _field(model, path) or (_field(model, path[:-1]) if len(path) > 1 else None)
    expected = (info.description if info is not None else None) or "of another type"
    if item is not None:
        wanted = _WANTED.get(kind, "valid")
        return Issue(path, "invalid",
                     f"{_show(value)} is not {wanted} (item {item + 1} of the array); expected {expected}")
    return Issue(path, "invalid", f"must be {expected}, not {_show(value)} ({toml_kind(value)})")


# ------------------------------------------------------------------ lines


def _part(name: str) -> str:
    return rf"""(?:{re.escape(name)}|"{re.escape(name)}"|'{re.escape(name)}')"""


class KeyLines:
    """Finds the line of a table header or of a key in TOML text (``first_line``: the file
    line of the text's first line, for text cut out of a bigger file such as a PEP 723 block).

    A table's header is ``[a.b]`` (``[[a]]`` with ``nth``: the ``nth`` one, from 0); a key's
    line is the first line inside its table (up to the next ``[`` header) that assigns it,
    bare or quoted. When the table has no header line (dotted keys, inline tables) a line
    assigning the dotted key anywhere is taken; failing that, the table's line, or the
    text's first line.
    """

    _ANY_HEADER = re.compile(r"^\s*\[")

    def __init__(self, text: str, first_line: int = 1) -> None:
        self.lines = text.splitlines()
        self.first = first_line

    def table(self, path: Sequence[str], nth: int | None = None) -> int | None:
        """The file line of the table's header, None when it has none."""
        if not path:
            return None
        inner = r"\s*\.\s*".join(_part(p) for p in path)
        header = rf"\[\[\s*{inner}\s*\]\]" if nth is not None else rf"\[\s*{inner}\s*\]"
        pattern = re.compile(rf"^\s*{header}\s*(#.*)?$")
        seen = 0
        for number, line in enumerate(self.lines):
            if pattern.match(line):
                if nth is None or seen == nth:
                    return self.first + number
                seen += 1
        return None

    def key(self, path: Sequence[str], key: str, nth: int | None = None) -> int:
        """The file line assigning ``key`` in table ``path`` (``()``: the top level)."""
        start = self.table(path, nth)
        assign = re.compile(rf"^\s*{_part(key)}\s*=")
        if start is not None or not path:
            begin = 0 if start is None else start - self.first + 1
            for number in range(begin, len(self.lines)):
                line = self.lines[number]
                if self._ANY_HEADER.match(line):
                    break  # the table ended without assigning the key
                if assign.match(line):
                    return self.first + number
            return start if start is not None else self.first
        dotted = re.compile(r"^\s*(?:" + r"\s*\.\s*".join(_part(p) for p in (*path, key)) + r")\s*=")
        parent = _part(path[-1])  # "envbisect.pre = ..." or "envbisect = {pre = ...}" under [tool]
        tail = re.compile(rf"^\s*(?:{parent}\s*\.\s*{_part(key)}\s*=|{parent}\s*=.*\b{re.escape(key)}\b)")
        for pattern in (dotted, tail):
            for number, line in enumerate(self.lines):
                if pattern.match(line):
                    return self.first + number
        return self.first
