"""``bisect run --diverge-from VERSION``: the reference release's run, and what a result says
about references and signatures.

Runs layer. The reference release is probed once, like any candidate (a stored probe of
it is reused: its outputs do not depend on anything but its own key), and its output
manifest becomes the run's :class:`~envbisect.compare.Reference`; every later probe is
judged by comparing its outputs with it (:mod:`envbisect.verdicts`). Without ``--good``
the reference is the good end of the search. Its output files must be in this cache (the
Dask executor brings back what workers wrote, :mod:`envbisect.outputs_transfer`): the
comparisons read them, here or shipped to the workers.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

from envbisect.compare import Reference, Tolerance
from envbisect.errors import ConfigError
from envbisect.outputs import path_of, store_root
from envbisect.signatures import NOT_SIGNATURE, Signature


def prepare(req) -> None:
    """Without ``--good`` (or, with ``--find-fix``, ``--bad``) the reference is that end."""
    if req.diverge_from and not req.find_fix and not req.good:
        req.good = req.diverge_from
    if req.diverge_from and req.find_fix and not req.bad:
        req.bad = req.diverge_from


def signature_part(req) -> dict:
    """What references and signatures add to a run's signature (nothing when unused, so the
    signatures of other runs stay as they were)."""
    part: dict = {}
    if req.diverge_from:
        part["reference"] = [req.diverge_from, req.tolerance.rtol, req.tolerance.atol]
    if req.signature:
        part["failure_signature"] = [req.signature.pattern, req.signature.exception]
    return part


def reproduce_args(req) -> list[str]:
    """The flags a "Reproduce with:" line needs to ask the same question."""
    args = ["--diverge-from", req.diverge_from, "--rtol", f"{req.tolerance.rtol:g}",
            "--atol", f"{req.tolerance.atol:g}"] if req.diverge_from else []
    if req.signature and req.signature.pattern:
        args += ["--signature", shlex.quote(req.signature.pattern)]
    return args


def recorded_judging(run: dict, rows: list[dict], recipe, base):
    """How ``bisect show --rerun`` judges a probe of ``run`` again: ``base`` (the run's regress
    mode, thresholds, timeout) with the reference, tolerances and signature the run recorded
    (:func:`signature_part`). The reference's outputs are the run's result's, else its own
    probe of the reference release. A run that recorded no signature gets the recipe's
    (``signature`` / ``signature-exception``): a recipe that names one always wants it."""
    from envbisect.requests_model import Numerics

    settings = run.get("settings") or {}
    sig = settings.get("failure_signature")
    judging = replace(base, signature=Signature(*sig) if sig else Numerics.of(recipe).signature)
    if not settings.get("reference"):
        return judging
    version, rtol, atol = settings["reference"]
    outputs = ((run.get("result") or {}).get("reference") or {}).get("outputs") or next(
        (r["outputs"] for r in rows if r.get("version") == version and r.get("outputs")), None)
    if not outputs:
        raise ConfigError(f"run {run.get('id')} judged by the outputs of {version}, and none are recorded in it; "
                          f"run it again (`bisect run ... --diverge-from {version}`) to re-check its probes")
    return replace(judging, reference=Reference(version, outputs), tolerance=Tolerance(rtol, atol))


def establish(run, label: str, requirements: list[str], *, package: str, cutoff, files: tuple = ()) -> Reference:
    """Probe the reference release in ``run`` and make its outputs the run's reference."""
    probe = run.probe(label, requirements, package=package, cutoff=cutoff, files=files)
    # Read back from the store: a probe reused from another run is not in the run's memory.
    row = next((r for r in run.session.store.probes_for_run(run.id) if r["seq"] == probe.seq), {})
    outputs = row.get("outputs")
    if row.get("exit_code") not in (0, 1):
        raise ConfigError(f"the reference release {label} could not be run ({probe.judgement.reason}); "
                          "pick a --diverge-from release the recipe runs on")
    if not outputs:
        note = f"; {row['outputs_note']}" if row.get("outputs_note") else ""
        raise ConfigError(f"the reference release {label} wrote no outputs to $ENVBISECT_OUTPUTS{note}; "
                          "have the recipe save its results there (see the README's recipe outputs)")
    root = store_root(run.session.settings.cache.root)
    missing = sorted(n for n, e in outputs.items() if not path_of(root, e["hash"]).is_file())
    if missing:  # recorded elsewhere (a worker kept what was over the transfer limit, an older run)
        raise ConfigError(f"the reference release {label}'s output(s) {', '.join(missing)} were recorded elsewhere "
                          f"and are not in this cache ({root}); store them by running the reference here once: "
                          f"`bisect check {run.recipe.shown} --with {package}=={label} --no-reuse`")
    reference = Reference(label, outputs)
    run.judging = replace(run.judging, reference=reference)
    return reference


def annotate(result: dict, judging, learned: dict) -> dict:
    """Add the reference, the tolerances, the signature and its misses to a bisection result."""
    if judging.reference is not None:
        result["reference"] = dict(judging.reference.as_dict(), rtol=judging.tolerance.rtol,
                                   atol=judging.tolerance.atol)
        first = result.get("first_good" if result.get("find_fix") else "first_bad")
        hit = next((p for p in learned.values() if p.label == first), None)
        result["diverged_outputs"] = list((hit.judgement.details or {}).get("diverged") or []) if hit else []
    if judging.signature:
        result["signature"] = judging.signature.as_dict()
        result["not_signature"] = sorted(p.label for p in learned.values()
                                         if p.judgement.reason.startswith(NOT_SIGNATURE))
    return result

