"""The ``[tool.envbisect.knobs]`` table of a recipe, checked (a part of :mod:`envbisect.schema`).

Each key names a knob (:mod:`envbisect.knobs`); its value is one of::

    TF_ENABLE_ONEDNN_OPTS = ["1", "0"]                          # the variable, values to try
    onednn = {env = "TF_ENABLE_ONEDNN_OPTS", values = ["0"]}    # the same, named
    fused = {module = "toypkg.settings", attribute = "FUSED", values = [false]}  # start-up

Environment values are strings (the process sees text); start-up values may be strings,
booleans, integers or floats (set as they are, right after ``module`` is imported). A
mistake is one sentence naming the knob and the form to write, which :mod:`envbisect.recipes`
turns into its one-line error with the file's line.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, PlainValidator

from envbisect.redact import SECRET_NAME

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_FORMS = ('write VAR = ["0", "1"], {env = "VAR", values = ["0"]} or '
          '{module = "pkg.settings", attribute = "NAME", values = [false]}')


def _values(value: object, *, text_only: bool) -> list:
    kinds = (str,) if text_only else (str, bool, int, float)
    if not isinstance(value, list) or not value or not all(isinstance(v, kinds) for v in value):
        wanted = "strings" if text_only else "strings, booleans or numbers"
        raise ValueError(f"values must be a non-empty array of {wanted}")
    return list(dict.fromkeys(value))


def _env_name(name: str) -> str:
    if not _ENV.match(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    if SECRET_NAME.search(name):
        raise ValueError(f"{name!r} looks like a secret, which envbisect never passes to recipes; rename it")
    return name


def knob_entry(value: object) -> dict:
    """One knob's value, normalised to ``{env, values}`` or ``{module, attribute, values}``."""
    try:
        if isinstance(value, list):
            return {"env": None, "values": _values(value, text_only=True)}
        if not isinstance(value, dict):
            raise ValueError("is neither an array of values nor a table")
        keys = set(value)
        if "env" in value and keys <= {"env", "values"}:
            return {"env": _env_name(str(value["env"])), "values": _values(value.get("values"), text_only=True)}
        if keys == {"module", "attribute", "values"}:
            module, attribute = value["module"], value["attribute"]
            if not (isinstance(module, str) and _DOTTED.match(module) and isinstance(attribute, str)
                    and _DOTTED.match(attribute)):
                raise ValueError("module and attribute must be dotted Python names")
            return {"env": None, "module": module, "attribute": attribute,
                    "values": _values(value["values"], text_only=False)}
        raise ValueError(f"has keys {', '.join(sorted(map(str, keys))) or '(none)'}")
    except ValueError as exc:
        raise ValueError(f"{exc}; {_FORMS}") from None


def _knobs(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"must be a table of knobs; {_FORMS}")
    out = {}
    for name, entry in value.items():
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a knob name (letters, digits, '_', '.', '-')")
        try:
            out[name] = knob_entry(entry)
            if out[name]["env"] is None and "module" not in out[name]:
                out[name]["env"] = _env_name(name)  # VAR = [...]: the key is the variable
        except ValueError as exc:
            raise ValueError(f"knob {name!r}: {exc}") from None
    return out


#: ``knobs`` in ``[tool.envbisect]``: knob name -> normalised entry.
KnobsField = Annotated[dict, PlainValidator(_knobs), Field(description="a table of knobs")]
