"""``[[listen]]`` tables of ``bisect.toml``: the repositories whose issue comments the
daemon serves ``/envbisect run`` requests from (docs/watch.md, "Listening on issues").

    [[listen]]
    repository = "octo/project"
    associations = ["OWNER", "MEMBER", "COLLABORATOR"]   # the default
    authors = ["alice"]               # optional: these logins too, whatever their association
    labels = ["regression"]           # optional: only issues carrying one of these labels
    index-url = "https://..."         # optional: where requested runs install from
    poll = "60s"                      # how often the comments are listed (conditional GET)
    timeout = "10m"                   # at most this per probe (a request may ask for less)
    max-probes = 12                   # probes one request may run
    max-wall = "1h"                   # wall time one request may take (checked before each probe)

Checked against :class:`ListenTable` (strict types, no unknown keys, the same field types
as ``[[watch]]``); :mod:`envbisect.watchconfig` calls :func:`check_listens` and reports
its problems with the file's other mistakes, each on its key's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from envbisect.schema import IndexUrlField, Text, parse_duration
from envbisect.schema_issues import KeyLines, did_you_mean, keys_of, validate

#: GitHub's ``author_association`` values (REST API, issue comments).
ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER",
                "MANNEQUIN", "NONE")
DEFAULT_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")
DEFAULT_POLL_S = 60.0
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_PROBES = 12
DEFAULT_MAX_WALL_S = 3600.0
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\[bot\])?$")


def _repository(value: str) -> str:
    if not _REPO.match(value):
        raise ValueError(f"{value!r} is not owner/repo; write e.g. \"octo/project\"")
    return value


def _login(value: str) -> str:
    if not _LOGIN.match(value):
        raise ValueError(f"{value!r} is not a GitHub login; write e.g. \"alice\"")
    return value


def _seconds(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; write e.g. \"30m\", \"6h\", \"1d\" or seconds") from None


Duration = Annotated[float, PlainValidator(_seconds), Field(description='a duration such as "10m" or seconds')]


class ListenTable(BaseModel):
    """One ``[[listen]]`` table (see the module docstring)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    repository: Annotated[Annotated[Text, AfterValidator(_repository)],
                          Field(description='a repository string, e.g. "octo/project"')]
    authors: Annotated[list[Annotated[Text, AfterValidator(_login)]],
                       Field(description='a list of GitHub logins, e.g. ["alice"]')] = []
    associations: Annotated[list[Literal[ASSOCIATIONS]],  # type: ignore[valid-type]
                            Field(description=f"a list of author associations among {', '.join(ASSOCIATIONS)}")
                            ] = list(DEFAULT_ASSOCIATIONS)
    labels: Annotated[list[Text], Field(description='a list of label names, e.g. ["regression"]')] = []
    index_url: IndexUrlField = Field(default=None, alias="index-url")
    poll: Duration = DEFAULT_POLL_S
    timeout: Duration = DEFAULT_TIMEOUT_S
    max_probes: Annotated[int, Field(ge=1, alias="max-probes", description="a whole number of at least 1")
                          ] = DEFAULT_MAX_PROBES
    max_wall: Annotated[Duration, Field(alias="max-wall")] = DEFAULT_MAX_WALL_S


LISTEN_KEYS = keys_of(ListenTable)


@dataclass(frozen=True)
class ListenSpec:
    """One validated ``[[listen]]`` table."""

    repository: str
    authors: tuple[str, ...] = ()
    associations: tuple[str, ...] = DEFAULT_ASSOCIATIONS
    labels: tuple[str, ...] = ()
    index_url: Optional[str] = None
    poll_s: float = DEFAULT_POLL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_probes: int = DEFAULT_MAX_PROBES
    max_wall_s: float = DEFAULT_MAX_WALL_S

    def allows(self, login: str, association: str) -> bool:
        """Whether a comment by ``login`` (``association`` to the repository) may run code."""
        return login.lower() in {a.lower() for a in self.authors} or association.upper() in self.associations

    def who_may_ask(self) -> str:
        """The allowed authors in words, for the polite refusal."""
        parts = [", ".join(a.lower() for a in self.associations)] if self.associations else []
        parts += [f"@{a}" for a in self.authors]
        return " or ".join(p for p in parts if p) or "nobody (the [[listen]] table allows no one)"


def check_listens(tables: object, lines: KeyLines) -> tuple[list[ListenSpec], list[tuple[int, str, str]]]:
    """The ``listen`` value of a parsed ``bisect.toml`` checked: the specs and every problem
    as (line, label, message), for :mod:`envbisect.watchconfig` to report with the rest."""
    problems: list[tuple[int, str, str]] = []
    if not isinstance(tables, list):
        return [], [(lines.key((), "listen"), "listen", "must be an array of tables: write [[listen]]")]
    specs: list[ListenSpec] = []
    for index, table in enumerate(tables):
        header = lines.table(("listen",), index) or 1
        label = f"listen[{index + 1}]"
        if not isinstance(table, dict):
            problems.append((header, label, "must be a table: write [[listen]] followed by key = value lines"))
            continue
        checked, issues = validate(ListenTable, table)
        for issue in issues:
            line = lines.key(("listen",), issue.key, index) if issue.kind != "missing" else header
            message = issue.message
            if issue.kind == "unknown":
                close = did_you_mean(issue.key, LISTEN_KEYS)
                hint = f"did you mean {close!r}?" if close else f"known keys: {', '.join(LISTEN_KEYS)}"
                message = f"unknown key; {hint}"
            problems.append((line, label if issue.kind == "missing" else f"{label}.{issue.key}", message))
        if checked is None:
            continue
        if not checked.authors and not checked.associations:
            problems.append((header, label, "no one may ask: set authors = [...] or associations = [...]"))
        spec = ListenSpec(checked.repository, tuple(checked.authors), tuple(checked.associations),
                          tuple(checked.labels), checked.index_url, checked.poll, checked.timeout,
                          checked.max_probes, checked.max_wall)
        if any(s.repository.lower() == spec.repository.lower() for s in specs):
            problems.append((header, f"{label}.repository", f"{spec.repository} is listened to twice; "
                             "merge the two [[listen]] tables"))
            continue
        specs.append(spec)
    return specs, problems
