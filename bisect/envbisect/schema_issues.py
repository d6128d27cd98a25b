"""What a settings file got wrong, said the way a person fixes it: validation errors of
the :mod:`envbisect.schema` models as :class:`Issue` records (the path of keys at fault and
one sentence naming the expected TOML type), and :class:`KeyLines`, which finds the line of
a key in the TOML text (:mod:`tomllib` keeps no positions). The callers
(:mod:`envbisect.recipes`, :mod:`envbisect.watchconfig`, :mod:`envbisect.listenconfig`)
turn both into their own one-line errors.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

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
