"""Judge a probe by its outputs against a reference release (``--diverge-from``).

Pure (no I/O). A recipe writes named outputs into ``$ENVBISECT_OUTPUTS``; the probe
stores a *manifest* of them (name -> content hash, kind, shape; see
:mod:`envbisect.outputs`) and, when the run compares against a reference, a
*comparison*: per output, the maximum absolute and maximum relative difference from the
reference's output of the same name, computed in the candidate's own environment.

The tolerance criterion is chosen so that it can be re-applied *exactly* to those two
stored numbers, so ``--rtol``/``--atol`` re-judge stored probes without running anything:

    an output matches when  max_abs <= atol  or  max_rel <= rtol

where ``max_abs = max_i |c_i - r_i|`` and ``max_rel = max_i |c_i - r_i| / |r_i|``
(``0/0`` is 0, ``x/0`` is infinite; a NaN where the reference has none, or the other way
round, makes both infinite). In words: every element is within ``atol``, or every element
is within ``rtol`` of the reference. (numpy's per-element ``|c - r| <= atol + rtol*|r|``
cannot be re-evaluated from any fixed set of stored numbers.) A missing or extra output,
or one whose kind or shape changed, diverges whatever the tolerance.

The comparison's key is the pair of contents compared: a stored comparison is valid for a
reference when it names the reference's digest (:func:`digest`), and an output whose
content hash equals the reference's needs no comparison at all (both differences are 0).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Defaults: numpy's ``allclose`` figures, read as "within atol, or within rtol".
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8


@dataclass(frozen=True)
class Tolerance:
    """``--rtol`` / ``--atol`` (see the module docstring for the criterion)."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def matches(self, max_abs: float, max_rel: float) -> bool:
        """Whether an output with these differences matches (NaN never matches)."""
        return bool(max_abs <= self.atol or max_rel <= self.rtol)

    def __str__(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


@dataclass(frozen=True)
class Reference:
    """The reference release's outputs: its version label, manifest and digest."""

    version: str
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest(self.outputs)

    def as_dict(self) -> dict:
        return {"version": self.version, "digest": self.digest, "outputs": dict(self.outputs)}


def digest(outputs: Mapping[str, Mapping[str, Any]]) -> str:
    """The content digest of a manifest: names and content hashes, nothing else."""
    blob = json.dumps({n: o.get("hash") for n, o in outputs.items()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _shape_of(entry: Mapping[str, Any]) -> tuple:
    return (entry.get("kind"), tuple(entry.get("shape") or ()) if entry.get("shape") is not None else None)


def structural(name: str, cand: Mapping | None, ref: Mapping | None) -> str | None:
    """Why an output diverges whatever the tolerance (missing, extra, kind or shape), or None."""
    if cand is None:
        return "missing (the reference has it)"
    if ref is None:
        return "extra (the reference has no such output)"
    (ck, cs), (rk, rs) = _shape_of(cand), _shape_of(ref)
    if ck != rk:
        return f"kind {ck} where the reference has {rk}"
    if cs != rs:
        return f"shape {_shape_text(cs)} where the reference has {_shape_text(rs)}"
    return None


def _shape_text(shape) -> str:
    return "scalar" if shape is None else "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def to_compare(outputs: Mapping[str, Mapping], reference: Reference) -> list[str]:
    """Names whose contents differ from the reference's but are structurally comparable:
    what the comparison script in the candidate's environment must measure."""
    ref = reference.outputs
    return sorted(n for n in outputs if n in ref and structural(n, outputs[n], ref[n]) is None
                  and outputs[n].get("hash") != ref[n].get("hash"))


#: How a failed comparison was stored as a "problem" by earlier versions (the comparison
#: script now reports it as an ``error``): read as the failure it was, not a divergence.
LEGACY_FAILURE = "cannot be compared: "


def differences(outputs: Mapping[str, Mapping] | None, comparison: Mapping | None,
                reference: Reference) -> dict[str, dict]:
    """Per output name: ``{"max_abs", "max_rel"}``, ``{"problem": why}`` when it diverges
    structurally, ``{"error": why}`` when the comparison itself failed (the candidate's
    environment could not read the file: no evidence either way, so the probe is
    untestable, never a divergence), or ``{"unknown": why}`` when no comparison against
    this reference exists."""
    outputs = outputs or {}
    measured = {}
    if comparison and comparison.get("reference") == reference.digest:
        measured = comparison.get("outputs") or {}
    out: dict[str, dict] = {}
    for name in sorted(set(outputs) | set(reference.outputs)):
        cand, ref = outputs.get(name), reference.outputs.get(name)
        problem = structural(name, cand, ref)
        if problem is not None:
            out[name] = {"problem": problem}
        elif cand.get("hash") == ref.get("hash"):
            out[name] = {"max_abs": 0.0, "max_rel": 0.0}
        elif isinstance(measured.get(name), Mapping) and "max_abs" in measured[name]:
            out[name] = {"max_abs": _num(measured[name]["max_abs"]), "max_rel": _num(measured[name]["max_rel"])}
        elif isinstance(measured.get(name), Mapping) and measured[name].get("problem"):
            why = str(measured[name]["problem"])
            # Comparisons stored before failures had their own key said "cannot be compared: ...".
            out[name] = {"error": why} if why.startswith(LEGACY_FAILURE) else {"problem": why}
        elif isinstance(measured.get(name), Mapping) and measured[name].get("error"):
            out[name] = {"error": str(measured[name]["error"])}  # a failed comparison proves nothing
        else:
            note = (comparison or {}).get("note") if comparison and comparison.get("reference") == reference.digest \
                else None
            out[name] = {"unknown": note or "not compared with this reference"}
    return out


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def settled(outputs: Mapping | None, comparison: Mapping | None, reference: Reference) -> bool:
    """Whether a stored probe can be judged against ``reference`` from what it stored
    (no output left unmeasured): the condition for reusing it in a reference run."""
    return not any("unknown" in d for d in differences(outputs, comparison, reference).values())


@dataclass(frozen=True)
class OutputVerdict:
    """The outcome of comparing one probe's outputs: matched (True/False; None when it
    cannot be told), a reason, the per-output differences and the diverging names."""

    matched: bool | None
    reason: str
    diffs: dict
    diverged: tuple[str, ...] = ()


def judge_outputs(outputs: Mapping | None, comparison: Mapping | None, reference: Reference,
                  tolerance: Tolerance) -> OutputVerdict:
    """Compare a probe's outputs with the reference under ``tolerance``."""
    diffs = differences(outputs, comparison, reference)
    if not outputs:
        return OutputVerdict(None, f"wrote no outputs to $ENVBISECT_OUTPUTS (the reference {reference.version} "
                                   f"wrote {', '.join(sorted(reference.outputs))})", diffs)
    unknown = [f"{n} ({d.get('unknown') or d['error']})" for n, d in diffs.items() if "unknown" in d or "error" in d]
    bad = []
    for name, d in diffs.items():
        if "problem" in d:
            bad.append(f"{name} {d['problem']}")
        elif "max_abs" in d and not tolerance.matches(d["max_abs"], d["max_rel"]):
            bad.append(f"{name} max_abs={d['max_abs']:.3g} max_rel={d['max_rel']:.3g}")
    diverged = tuple(n for n, d in diffs.items() if "problem" in d
                     or ("max_abs" in d and not tolerance.matches(d["max_abs"], d["max_rel"])))
    if bad:
        return OutputVerdict(False, f"outputs differ from {reference.version} ({tolerance}): " + "; ".join(bad),
                             diffs, diverged)
    if unknown:
        return OutputVerdict(None, "outputs could not be compared: " + "; ".join(unknown), diffs)
    return OutputVerdict(True, f"{len(diffs)} output(s) match {reference.version} ({tolerance})", diffs)


def brief(diffs: Mapping[str, Mapping] | None, limit: int = 80) -> str:
    """A short rendering for tables: ``a=0, b: abs 1e-3 rel 2e-4, c: missing``."""
    parts = []
    for name, d in (diffs or {}).items():
        if "problem" in d:
            parts.append(f"{name}: {d['problem'].split(' (')[0]}")
        elif "max_abs" in d:
            parts.append(f"{name}=0" if d["max_abs"] == 0 else f"{name}: abs {d['max_abs']:.2g} rel {d['max_rel']:.2g}")
        else:
            parts.append(f"{name}: ?")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"
