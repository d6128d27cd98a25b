"""Keep secrets out of the CLI's own ``/proc/<pid>/environ`` and ``/proc/<pid>/cmdline``.

Recipes run as the same user as ``bisect``; their own environment is scrubbed
(:func:`envbisect.runner.scrubbed_environ`), but they could still read their parent's
environment and command line from ``/proc`` (and anyone on the machine can read a command
line with ``ps``). So the first thing the CLI does, when its environment holds
secret-looking variables or its arguments hold credential URLs (the rule is
:func:`envbisect.redact.is_secret`, the one recipes are scrubbed with), is to re-execute
itself once, same pid, with those variables removed and those arguments replaced by
their redacted form (``http://***@host/simple``). The real values travel through an
inherited pipe whose read end is named by :data:`SECRETS_FD_ENV`; the new image reads it
to the end at start, closes it and keeps the values in memory (:mod:`envbisect.secrets`),
restoring ``sys.argv`` so options parse as given. After that, ``/proc`` shows only the new
image's environment and arguments. The few held variables this process and its installers
need to reach the network (proxies with credentials, the SSH agent) are put back into
``os.environ``: ``/proc/<pid>/environ`` shows the environment an image started with, never
later changes, and recipes get a scrubbed copy anyway.

Only a process started as the CLI (``bisect``/``envbisect`` console scripts,
``python -m envbisect``) re-executes; a library caller of :func:`envbisect.cli.main` is
left alone. Where re-execution is impossible (not POSIX, the pipe cannot be written) the
command runs as it was started.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

from envbisect import secrets
from envbisect.redact import CREDENTIAL_URL, is_secret, redact

#: The (non-secret) variable naming the inherited pipe's read end in the new image.
SECRETS_FD_ENV = "ENVBISECT_SECRETS_FD"
#: Held variables put back into ``os.environ`` for requests, uv and pip: proxies (their
#: values may hold credentials) and the SSH agent (git dependencies). Never tokens.
_NETWORK = re.compile(r"^(?:https?_proxy|all_proxy|ssh_auth_sock)$", re.IGNORECASE)
_SCRIPT_NAMES = frozenset({"bisect", "envbisect"})
_done = False


def harden() -> None:
    """Receive handed-over secrets, or hand them over and re-execute (see the module
    docstring). Idempotent: only the first call in a process does anything."""
    global _done
    if _done:
        return
    _done = True
    if SECRETS_FD_ENV in os.environ:
        _receive(os.environ.pop(SECRETS_FD_ENV))
        return
    if os.name != "posix" or not _launched_as_cli():
        return
    env_secrets = {k: v for k, v in os.environ.items() if is_secret(k, v)}
    argv_secrets = {i: a for i, a in enumerate(sys.argv) if i and CREDENTIAL_URL.search(a)}
    if env_secrets or argv_secrets:
        _reexec(env_secrets, argv_secrets)


def placeholder(arg: str) -> str:
    """What a credential-bearing argument shows in the new image's command line."""
    return CREDENTIAL_URL.sub(lambda m: m.group(0).split("://", 1)[0] + "://***@", redact(arg))


def _launched_as_cli() -> bool:
    """Whether this process was started as the command (not a library or test caller)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    script = getattr(main, "__file__", None) or ""
    as_cli = (spec is not None and spec.name == "envbisect.__main__") or Path(script).name in _SCRIPT_NAMES
    orig = list(getattr(sys, "orig_argv", []))
    args = sys.argv[1:]
    # The new image must get the same arguments: they are the tail of the original argv.
    return as_cli and bool(sys.executable) and len(orig) > len(args) and orig[len(orig) - len(args):] == args


def _reexec(env_secrets: dict[str, str], argv_secrets: dict[int, str]) -> None:
    payload = json.dumps({"env": env_secrets, "argv": {str(i): a for i, a in argv_secrets.items()}}).encode()
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)  # never block on a payload larger than the pipe
        _grow_pipe(write_fd, len(payload))
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
    except OSError:
        os.close(read_fd)
        return  # cannot hand over: run as started
    finally:
        os.close(write_fd)
    os.set_inheritable(read_fd, True)
    args = list(sys.orig_argv)
    offset = len(args) - len(sys.argv)  # sys.argv[i] is args[offset + i]
    for i, value in argv_secrets.items():
        args[offset + i] = placeholder(value)
    env = {k: v for k, v in os.environ.items() if k not in env_secrets}
    env[SECRETS_FD_ENV] = str(read_fd)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        os.execve(sys.executable, args, env)
    except OSError:
        os.close(read_fd)  # run as started


def _grow_pipe(fd: int, size: int) -> None:
    """Make the pipe hold ``size`` bytes where the platform allows (Linux: 64 KiB default)."""
    if size <= 65536:
        return
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size + 4096)
    except (ImportError, AttributeError, OSError):
        pass  # the write below fails with BlockingIOError and the command runs as started


def _receive(fd_text: str) -> None:
    """Read the handed-over secrets (the new image's side)."""
    try:
        fd = int(fd_text)
    except ValueError:
        return
    try:
        if fd <= 2 or not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return  # not a pipe this process was handed: leave it alone
    except OSError:
        return
    chunks = []
    try:
        os.set_blocking(fd, False)  # the writer closed before exec: everything is there
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        data = json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return
    finally:
        os.close(fd)
    if not isinstance(data, dict):
        return
    held = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    secrets.load(held)
    os.environ.update({k: v for k, v in held.items() if _NETWORK.match(k)})
    for key, value in (data.get("argv") or {}).items():
        i = int(key)
        if 0 < i < len(sys.argv) and sys.argv[i] == placeholder(value):
            sys.argv[i] = value
