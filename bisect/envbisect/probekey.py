"""Probe keys: what makes a stored verdict reusable, and when a stored row still holds.

The probe key (what makes a stored verdict reusable) is the hash of: the recipe's hash,
the env key (interpreter version and implementation, platform, lock hash, installer),
the host fingerprint (:mod:`envbisect.host`: OS and release, libc, machine, CPU, GPU
and driver; never the hostname) and the values of the environment variables the recipe
declares (``env = [...]`` in ``[tool.envbisect]``) plus every ``ENVBISECT_*`` variable
that is not one of envbisect's own settings. The timeout is the one part not hashed: a
stored probe that timed out is reused only under a timeout no longer than the one it had,
and one that finished is reused only when it finished within the timeout asked for now.
Judging settings (``--regress``, thresholds, ``--samples auto`` and its confidence, cap and
direction, tolerances, signatures) are not in the key: stored raw results (each sample one
row) are judged again under the current ones. Nor is a reference release
(``--diverge-from``): a recipe's outputs do not depend on it, only their comparison does,
so a stored probe is reused for a reference run when every output is identical to the
reference's or was measured against these very reference contents (see
:meth:`envbisect.requests_model.Judging.reusable`), and is run again otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os

from envbisect.config import OWN_VARIABLES
from envbisect.errors import ConfigError
from envbisect.recipes import Recipe
from envbisect.runner import scrubbed_environ


def probe_key(recipe_hash: str, env_key: str, host: str, values: dict[str, str | None]) -> str:
    """The reuse key of a probe (see the module docstring); the timeout is checked apart."""
    blob = json.dumps({"recipe": recipe_hash, "env": env_key, "host": host, "env_values": values}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def env_values(recipe: Recipe, environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """The values (None: unset) of the variables the recipe declares, plus every
    ``ENVBISECT_*`` variable that is not one of envbisect's own settings. A declared
    variable that recipes never see (it looks like a secret) is a :class:`ConfigError`."""
    environ = dict(os.environ if environ is None else environ)
    visible = scrubbed_environ(environ)
    hidden = [n for n in recipe.settings.env if n in environ and n not in visible]
    if hidden:
        raise ConfigError(f"the recipe declares env {', '.join(hidden)}, which envbisect never passes to recipes "
                          "(the name or value looks like a secret); rename the variable or drop it from env")
    names = set(recipe.settings.env) | {n for n in environ if n.startswith("ENVBISECT_") and n not in OWN_VARIABLES}
    return {n: visible.get(n) for n in sorted(names)}


def ran(row: dict) -> bool:
    """Whether a stored probe row ran the recipe (else it records an install failure)."""
    return bool(row.get("log_path") or row.get("timed_out") or row.get("exit_code") is not None
                or row.get("signal") is not None)


def reusable(rows: list[dict], timeout: float) -> list[dict]:
    """Stored executed rows whose verdict still holds under ``timeout``: a timed-out row
    only if it had at least this long, a finished row only if it finished within it. Rows
    that never ran the recipe (install failures) are not reused: the index may have changed."""
    out = []
    for row in rows:
        if not ran(row):
            continue
        if row.get("timed_out"):
            if (row.get("timeout_s") or 0.0) >= timeout:
                out.append(row)
        elif (row.get("duration_s") or 0.0) <= timeout:
            out.append(row)
    return out
