"""The two-phase nightly search: bisect the releases, then the nightlies between them.

The rules for nightly candidates (variants, one build per night, windows) live in
:mod:`envbisect.nightly`; this module runs the searches (:func:`run_nightlies`,
:func:`run_with_nightlies`) through :func:`envbisect.byversion.run_bisection` with a
session whose index puts the nightly channel first.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

from envbisect.byversion import run_bisection
from envbisect.errors import ConfigError, EnvbisectError
from envbisect.nightly import ChannelConfig, Window, window_between, with_nightly_index
from envbisect.redact import redact
from envbisect.session import Session


def _nightly_request(session, req, channel: ChannelConfig, window: Window | None):
    settings = replace(session.settings, index=with_nightly_index(session.settings.index, channel.index_url))
    package = channel.package or req.package
    nreq = replace(req, package=package, pre=True, nightly=True, variant=channel.variant, window=window,
                   replaces=tuple({req.package, *req.replaces} - {package}))
    if window is not None:  # the window replaces the release phase's range and ends
        nreq = replace(nreq, spec=None, good=None, bad=None, verify=True)
    return Session(settings, session.store, session.handler), nreq


def run_nightlies(session, req, channel: ChannelConfig, window: Window | None = None) -> dict:
    """Bisect only the nightly builds of the channel (``--nightly-index``/``--variant``)."""
    nsession, nreq = _nightly_request(session, req, channel, window)
    with nsession:
        result = run_bisection(nsession, nreq)
    result["reproduce"] = reproduce_nightly(nreq, channel, result)
    session.store.update_run(result["run_id"], status="done", result=result)
    return result


def run_with_nightlies(session, req, channel: ChannelConfig) -> dict:
    """``bisect run --nightlies``: bisect the releases, then the nightlies between the
    last good and first bad release (a second, finer phase). The release result is
    returned with the nightly phase under ``nightly_phase``; both are stored."""
    if not channel.configured:
        raise ConfigError(f"no nightly channel is configured for {req.package}; pass --nightly-index URL "
                          "(e.g. a PyTorch nightly index) or --nightly-package NAME (e.g. tf-nightly), or set "
                          "nightly-index / nightly-package in the recipe's [tool.envbisect] table")
    release = run_bisection(session, req)
    if release["status"] != "found":
        release["nightly_phase"] = {"status": "not-run", "reason": "the release phase found no boundary"}
    else:
        window = window_between(release)
        session.handler.note(f"continuing into the nightlies built {window.describe()}")
        try:
            nightly = run_nightlies(session, req, channel, window)
        except EnvbisectError as exc:  # e.g. the channel no longer keeps builds that old
            release["nightly_phase"] = {"status": "not-run", "reason": redact(str(exc))}
        else:
            nightly["release_run"] = release["run_id"]
            session.store.update_run(nightly["run_id"], status="done", result=nightly)
            release["nightly_phase"] = nightly
    session.store.update_run(release["run_id"], status="done", result=release)
    return release


def reproduce_nightly(req, channel: ChannelConfig, result: dict) -> list[str]:
    """Reproduce lines for a nightly search: the channel index and ``--pre`` included."""
    old_key, new_key = ("last_bad", "first_good") if req.find_fix else ("last_good", "first_bad")
    recipe = shlex.quote(req.recipe.shown)
    index = f" --nightly-index {shlex.quote(redact(channel.index_url))}" if channel.index_url else ""
    args = f"bisect run {recipe} --package {req.package} --pre{index}"
    if result.get("nightly", {}) and result["nightly"].get("variant"):
        args += f" --variant {result['nightly']['variant']}"
    if result.get(old_key):
        args += f" --{'bad' if req.find_fix else 'good'} {shlex.quote(result[old_key])}"
    if result.get(new_key):
        args += f" --{'good' if req.find_fix else 'bad'} {shlex.quote(result[new_key])}"
    lines = [args]
    if result.get(new_key):
        uv_index = f" --index {shlex.quote(redact(channel.index_url))}" if channel.index_url else ""
        pin = shlex.quote(f"{req.package}=={result[new_key]}")
        lines.append(f"uv run --prerelease allow{uv_index} --with {pin} {recipe}")
    return lines
