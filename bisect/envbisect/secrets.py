"""Secrets this process holds in memory only: never in its environment, never in argv.

A recipe runs as the same user as ``bisect``, so it can read ``/proc/<pid>/environ`` and
``/proc/<pid>/cmdline`` of every ancestor. The CLI entry point (:mod:`envbisect.reexec`)
therefore re-executes itself once with secret-looking variables removed from its
environment and credential URLs in argv replaced by a placeholder, handing the real
values over through an inherited pipe. They end up here: :func:`environ` is the
environment as the user set it (``os.environ`` plus these), for the few readers that need
a secret (the index settings, the tracker token); subprocesses get ``os.environ``, which
holds none of them (but the network settings :mod:`envbisect.reexec` puts back).

Tokens may also come from a file, which never enters any environment: see :func:`read_token`.
"""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path

from envbisect.plainfile import read_named

#: systemd's ``LoadCredential=`` directory (``$CREDENTIALS_DIRECTORY/<name>``).
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"

#: The largest token file read: a token is a line; anything longer is the wrong file.
TOKEN_FILE_MAX = 64 * 1024

_hidden: dict[str, str] = {}


def load(values: Mapping[str, str]) -> None:
    """Keep ``values`` (variables moved out of the environment by the re-exec)."""
    _hidden.update(values)


def environ() -> Mapping[str, str]:
    """The environment as the user set it: ``os.environ`` (live), then the held secrets."""
    return ChainMap(os.environ, _hidden)  # type: ignore[arg-type]


class TokenFileError(OSError):
    """A token file was named but cannot be read (the message names the file, never its contents)."""


def read_token(name: str, source: Mapping[str, str] | None = None) -> str:
    """A token from ``NAME``, else the file named by ``NAME_FILE``, else systemd's
    ``$CREDENTIALS_DIRECTORY/<name in lower case>``; ``""`` when none is set.

    Read at each call, so a rotated file is picked up without a restart. Raises
    :class:`TokenFileError` when a named file cannot be read, is no regular file (links
    are followed; a FIFO or device is never read: it could hang every call), is over
    :data:`TOKEN_FILE_MAX` or is empty.
    """
    env = environ() if source is None else source
    value = (env.get(name) or "").strip()
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if not path and env.get(CREDENTIALS_DIRECTORY):
        candidate = Path(env[CREDENTIALS_DIRECTORY]) / name.lower()
        path = str(candidate) if candidate.exists() else None
    if not path:
        return ""
    try:
        value = read_named(Path(path), TOKEN_FILE_MAX).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise TokenFileError(f"cannot read the token file {path} ({reason})") from None
    if not value:
        raise TokenFileError(f"the token file {path} is empty")
    return value
