"""Hide credentials in any text that may reach a person, a log, a report or the store.

Index URLs routinely carry tokens (``https://user:token@host/simple``), and installer
errors echo them. Every output boundary runs text through :func:`redact`; caches that
key on an index URL use :func:`strip_credentials`, so a rotated password changes nothing.
"""

from __future__ import annotations

import re

# userinfo = everything between "scheme://" and "@" that cannot belong to the host/path.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]+@")


def redact(text: str) -> str:
    """Replace the credentials of every URL inside ``text`` with ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def strip_credentials(url: str) -> str:
    """``url`` without its userinfo (also a redacted ``***@``): the same index for caches
    such as uv's, which key on the URL without credentials."""
    return _USERINFO.sub(r"\g<scheme>", url)
