"""Renderings of ``--samples auto`` results: per probe, the samples taken (values, in
order), the verdict and its confidence (the posterior probability of the release's
side); and the change's posterior probability with the pooled sides' separation. Pure
formatting of a stored result (:func:`envbisect.noisy.Sampler.annotate` wrote it)."""

from __future__ import annotations


def _summary(d: dict) -> str:
    return f"{d['mean']:.4g} ± {d['sd']:.2g} (n={d['n']})"


def sampling_lines(result: dict) -> list[str]:
    """Plain lines: a head line (metric, confidence, cap, the change and the sides), then
    one per probe."""
    plan = result.get("sampling")
    if not plan:
        return []
    head = (f"samples of {plan['metric']} at {plan['confidence']:.0%} confidence, at most {plan['max_samples']} per "
            f"probe, direction {plan['direction']}")
    if plan.get("boundary_probability") is not None:
        head += f"; the change's posterior probability {plan['boundary_probability']:.4f}"
    ends = plan.get("endpoints")
    if ends:
        head += (f"; sides good {_summary(ends['good'])}, bad {_summary(ends['bad'])}, "
                 f"separated (t={ends['t']:.2f} > {ends['critical']:.2f})")
    lines = [head]
    for p in result.get("probes") or []:
        values = p.get("samples") or []
        shown = ", ".join(f"{v:.4g}" for v in values)
        lines.append(f"{p['version']}: {p['verdict']} after {len(values)} sample{'s' if len(values) != 1 else ''} "
                     f"[{shown}]: {p['reason']}")
    return lines


def markdown_lines(result: dict) -> list[str]:
    """The report's "Samples" section (empty for runs without ``--samples auto``)."""
    lines = sampling_lines(result)
    if not lines:
        return []
    return ["", "#### Samples", "", lines[0][0].upper() + lines[0][1:] + ".", "",
            *(f"- `{line.split(':', 1)[0]}`:{line.split(':', 1)[1]}" for line in lines[1:])]
