"""One release checked by the watch daemon: a recorded probe, judged as ``bisect run`` judges.

Runs layer, for :mod:`envbisect.watch`. Each probe is a run of kind ``check`` (resumable by
signature) judged with the recipe's regress mode and its numerics
(:class:`envbisect.requests_model.Numerics`: the ``[tool.envbisect]`` table's ``reference``,
``rtol``/``atol``, ``signature``/``signature-exception``), so what the daemon calls good or
bad is what ``bisect run RECIPE`` would call it:

* with a signature, a release that fails without it is untestable: never a regression,
  never bisected, never posted;
* with ``reference = "VERSION"``, the reference release is probed first in each check run
  (a stored probe of it is reused by key, so after the first check this costs a resolve) and
  the release is good when its outputs match the reference's within tolerance. The
  reference is the release the recipe names, not the watch's baseline: "did my outputs
  drift from VERSION's" has one answer whichever release the watch started from, and the
  bisection a change triggers judges against the same reference.
"""

from __future__ import annotations

from envbisect import reference
from envbisect.driver import open_run
from envbisect.policy import RegressMode
from envbisect.recipes import Recipe
from envbisect.requests_model import Judging, Numerics, parse_with, requirements_for, signature
from envbisect.session import Probe, Session


def probe_release(session: Session, recipe: Recipe, numerics: Numerics, *, watch: str, package: str,
                  version: str, with_: tuple[str, ...], regress: RegressMode) -> tuple[Probe, int]:
    """One recorded probe of ``package==version`` in a ``check`` run; the probe and the run's id."""
    pins = parse_with(with_)
    reqs = requirements_for(recipe, pins, package, version)
    part = reference.signature_part(numerics)
    sig = signature({"watch": watch, "recipe": recipe.hash, "requirements": reqs,
                     "index": session.settings.index.redacted(), **part})
    judging = numerics.judging(Judging(recipe.settings.timeout, regress))
    with open_run(session, kind="check", recipe=recipe, judging=judging, signature=sig,
                  settings={"watch": watch, "with": list(with_), "version": version, **part},
                  argv=["watch", watch], package=package) as run:
        if numerics.diverge_from:  # its outputs judge the release (a stored probe of it is reused)
            ref_reqs = requirements_for(recipe, pins, package, numerics.diverge_from)
            reference.establish(run, numerics.diverge_from, ref_reqs, package=package, cutoff=run.latest(ref_reqs))
        session.handler.probe_started(version, 1, 1)
        probe = run.probe(version, reqs, package=package)
        j = probe.judgement
        run.finish(reference.annotate({"kind": "check", "watch": watch, "package": package, "version": version,
                                       "outcome": j.outcome.value, "verdict": j.verdict.value, "reason": j.reason,
                                       "snapshot": run.snapshot}, run.judging, {}))
    return probe, run.id
