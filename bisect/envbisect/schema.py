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

Validation errors become :class:`envbisect.schema_issues.Issue` records, with the line of
the key at fault (:class:`envbisect.schema_issues.KeyLines`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

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
)

from envbisect.errors import first_line
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
        raise ValueError(f"{value!r} is not a requirement ({first_line(exc)}); "
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
