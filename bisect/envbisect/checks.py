"""``bisect check`` (one probe of the recipe as it is today) and ``bisect show --rerun``
(a recorded probe run again from its stored lock, offline).

Both are runs of kind ``check`` opened through :func:`envbisect.driver.open_run`. A check
resolves "latest" as of now each time, so a dependency published since the last check is
seen (a new lock, a new env), while the verdict of an unchanged world is reused by probe
key.
"""

from __future__ import annotations

import time

from envbisect import __version__, reference
from envbisect.config import Settings, host_info
from envbisect.driver import open_run
from envbisect.errors import ConfigError, InstallFailed
from envbisect.executor import ProbeTask, Workshop, run_in
from envbisect.nightly import display
from envbisect.plan import Lock
from envbisect.policy import RegressMode, Threshold
from envbisect.recipes import Recipe, load_recipe
from envbisect.requests_model import Judging, parse_with, requirements_for, signature
from envbisect.session import Session


def run_meta(recipe: Recipe, settings: Settings, python_version: str) -> dict:
    return {"recipe": recipe.shown, "recipe_hash": recipe.hash, "envbisect": __version__,
            "host": host_info(python_version), "index": settings.index.redacted(),
            "installer": settings.installer}


def run_check(session: Session, recipe: Recipe, *, with_: tuple[str, ...], judging: Judging,
              argv: list[str] | None = None) -> dict:
    """``bisect check``: one probe of the recipe in a cached env, recorded like any probe
    (judged by exit, thresholds and the recipe's signature; a reference needs a second release)."""
    started = time.monotonic()
    reqs = requirements_for(recipe, parse_with(with_))
    sig = signature({"check": recipe.hash, "reqs": reqs, "t": time.time()})
    settings = {"with": list(with_), "timeout": judging.timeout, "regress": judging.regress.value}
    label = ", ".join(with_) or "latest"
    with open_run(session, kind="check", recipe=recipe, judging=judging, signature=sig, settings=settings,
                  argv=argv or []) as run:
        session.handler.probe_started(label, 1, 1)
        probe = run.probe(label, reqs, package=None)
        row = session.store.probes_for_run(run.id)[-1]
        j = probe.judgement
        result = dict(run_meta(recipe, session.settings, session.interpreter.version), run_id=run.id, kind="check",
                      status=j.outcome.value, outcome=j.outcome.value, verdict=j.verdict.value, reason=j.reason,
                      metrics=probe.metrics, metrics_note=row.get("metrics_note"), resolved=probe.resolved,
                      requirements=reqs, env_key=row.get("env_key"), lock_hash=row.get("lock_hash"),
                      snapshot=run.snapshot, reused=probe.reused, executed=probe.executed,
                      stderr_tail=(row.get("stderr_tail") or "")[-2000:], log_path=row.get("log_path"),
                      signature_matched=(j.details or {}).get("signature_matched"),
                      duration_s=round(time.monotonic() - started, 3))
        return run.finish(result)


def rerun_probe(session: Session, run_id: int, seq: int, *, argv: list[str] | None = None) -> dict:
    """``bisect show RUN --rerun SEQ``: run a recorded probe again from the cache, offline.

    Nightly channels prune old builds, so a finished run must stay checkable without
    them: the probe's environment is used as the cache kept it; if it was evicted, it
    is rebuilt by uv ``--offline`` from uv's cache and the probe's stored lock. The
    re-run is recorded as a ``check`` run naming the probe it repeats, and judged as that
    run judged (:func:`envbisect.reference.recorded_judging`: regress mode, thresholds,
    the reference's outputs and tolerances, the failure signature); its outputs are
    stored and compared with the reference's like any probe's.
    """
    store = session.store
    run = store.get_run(run_id)
    rows = [r for r in store.probes_for_run(run_id) if r["seq"] == seq]
    if not rows:
        raise ConfigError(f"run {run_id} has no probe #{seq}; list its probes with `bisect show {run_id}`")
    row = rows[0]
    lock_text = store.get_lock(row["lock_hash"]) if row.get("lock_hash") else None
    if not row.get("resolved") or not lock_text:
        raise ConfigError(f"probe #{seq} of run {run_id} never ran the recipe in a locked environment "
                          f"({row.get('reason') or 'no env'}); pick one that ran from `bisect show {run_id}`")
    recipe = load_recipe(run["recipe_path"])
    stored = run.get("settings") or {}
    env, source = session.envs.lookup_key(row["env_key"]), "kept environment"
    if env is None:
        spec = session.env_spec(Lock.from_text(lock_text), offline=True)
        env, source = session.envs.ensure(spec), "rebuilt offline from the uv cache"
    regress = RegressMode(stored.get("regress") or RegressMode.EXIT.value)
    thresholds = tuple(Threshold.parse(t) for t in stored.get("thresholds") or [])
    timeout = float(stored.get("timeout") or recipe.settings.timeout)
    label = row.get("version") or "probe"
    # Judged as the run judged: its reference's outputs, tolerances and signature.
    judging = reference.recorded_judging(run, store.probes_for_run(run_id), recipe,
                                         Judging(timeout, regress, thresholds))
    with open_run(session, kind="check", recipe=recipe, judging=judging, argv=argv or [],
                  signature=signature({"rerun": [run_id, seq], "t": time.time()}),
                  settings={"rerun_of": {"run": run_id, "seq": seq}, "regress": regress.value,
                            **reference.signature_part(judging.numerics)}) as new:
        session.handler.probe_started(display(label), 1, 1)
        task = ProbeTask(new.id, "rerun", 0, recipe.path.name, recipe.text, recipe.hash, lock_text, timeout,
                         exclusive=recipe.settings.exclusive, resources=dict(recipe.settings.resources),
                         recipe_path=str(recipe.path), reference=judging.reference.as_dict() if judging.reference
                         else None)
        shop = Workshop(session.settings.cache, session.settings.index, session.interpreter, envs=session.envs)
        out = run_in(task, shop, env)
        if out.install_failed is not None:
            raise InstallFailed(out.install_failed)
        j = judging.judge(out.raw)
        store.record_probe(new.id, attempt=0, recipe_hash=recipe.hash, env_key=env.key, lock_hash=row["lock_hash"],
                           host=session.host, fingerprint=session.fingerprint, package=row.get("package"),
                           version=label, requirements=row.get("requirements"), timeout_s=timeout,
                           **dict(out.raw, resolved=env.resolved), outcome=j.outcome.value, verdict=j.verdict.value,
                           reason=j.reason)
        session.handler.probe_finished(display(label), j, False)
        details = j.details or {}
        return new.finish(reference.annotate({
            "run_id": new.id, "kind": "check", "rerun_of": {"run": run_id, "seq": seq, "version": label},
            "status": j.outcome.value, "outcome": j.outcome.value, "verdict": j.verdict.value, "reason": j.reason,
            "original_outcome": row.get("outcome"), "environment": source, "env_key": env.key,
            "recipe_changed": recipe.hash != run["recipe_hash"], "metrics": out.raw.get("metrics"),
            "resolved": env.resolved, "output_diffs": details.get("output_diffs"),
            "signature_matched": details.get("signature_matched")}, judging, {}))
