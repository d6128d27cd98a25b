"""Hide credentials in any text that may reach a person, a log, a report or the store.

Index URLs routinely carry tokens (``https://user:token@host/simple``), and installer
errors and recipe output echo them (and ``Authorization:`` headers, ``?token=`` query
strings). Every output boundary runs text through :func:`redact`; caches that key on an
index URL use :func:`strip_credentials`, so a rotated password changes nothing.

:data:`SECRET_NAME` and :data:`CREDENTIAL_URL` are the one rule for "this environment
variable holds a secret": recipes never see such variables (:mod:`envbisect.runner`),
and the CLI moves them out of its own environment (:mod:`envbisect.reexec`).
"""

from __future__ import annotations

import re

# userinfo = everything between "scheme://" and "@" that cannot belong to the host/path.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]+@")
# "Authorization: Bearer <token>" (and Proxy-Authorization), as a header line or "name=value".
_AUTH_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization\b[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?:(?P<scheme>basic|bearer|token|digest|negotiate)[ \t]+)?(?P<value>[^\s\"',;]+)",
    re.IGNORECASE,
)
# token=..., access_token=..., password=..., GITHUB_TOKEN=..., api_key=... (query strings,
# command lines, "NAME=value" dumps of an environment).
_SECRET_PARAM = re.compile(
    r"(?P<name>(?<![\w-])(?:[\w-]*[_-])?(?:access_token|refresh_token|token|password|passwd|secret|api_?key)=)"
    r"(?P<value>[^\s&#\"'<>]+)",
    re.IGNORECASE,
)

#: Variable names that look like they hold a secret (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY,
#: HF_TOKEN, SSH_AUTH_SOCK ...). Over-matching costs a recipe nothing it should rely on.
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL|AUTH|PRIVATE_KEY|SESSION_KEY|ACCESS_KEY",
    re.IGNORECASE,
)
#: A URL carrying credentials: "scheme://user:pass@host", or any userinfo on http(s)
#: ("https://<token>@host").
CREDENTIAL_URL = re.compile(
    r"[a-z][a-z0-9+.-]*://[^/\s@:]*:[^/\s@]*@|https?://[^/\s@]+@", re.IGNORECASE
)


def is_secret(name: str, value: str) -> bool:
    """Whether an environment variable looks like it holds a secret (by name or value)."""
    return bool(SECRET_NAME.search(name) or CREDENTIAL_URL.search(value))


def _hide_auth(found: re.Match) -> str:
    scheme = found["scheme"]
    return f"{found['name']}{scheme} ***" if scheme else f"{found['name']}***"


def redact(text: str) -> str:
    """Replace the credentials of every URL inside ``text`` with ``***``, and the values of
    ``Authorization`` headers and of secret-named parameters (``token=``, ``password=``)."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _AUTH_HEADER.sub(_hide_auth, text)
    return _SECRET_PARAM.sub(r"\g<name>***", text)


# In source code: a quoted value assigned to (or keyed by) a secret-looking name
# (GITHUB_TOKEN = "...", {"api_key": "..."}), and tokens with a well-known prefix.
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<name>\b[\w-]*(?:" + SECRET_NAME.pattern + r")[\w-]*[\"']?\s*[:=]\s*)(?P<q>[\"'])(?P<value>[^\"'\n]+)(?P=q)",
    re.IGNORECASE,
)
_KNOWN_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}|hf_[A-Za-z0-9]{20,}"
                          r"|xox[abpr]-[\w-]{10,}|sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16})\b")


def redact_source(text: str) -> str:
    """:func:`redact` for a recipe's source shown in a report, which also hides quoted
    values of secret-looking names and tokens with a well-known prefix (``ghp_``, ``hf_``,
    ...). Defence in depth: a recipe meant to be shared should read secrets from its
    environment or a file, never hold them."""
    text = _SECRET_ASSIGNMENT.sub(r"\g<name>\g<q>***\g<q>", redact(text))
    return _KNOWN_TOKEN.sub("***", text)


def strip_credentials(url: str) -> str:
    """``url`` without its userinfo (also a redacted ``***@``): the same index for caches
    such as uv's, which key on the URL without credentials."""
    return _USERINFO.sub(r"\g<scheme>", url)
