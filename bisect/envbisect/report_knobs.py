"""Text and Markdown renderings of ``bisect narrow``'s answer (the knob that flips it).

A narrow result (:mod:`envbisect.narrow`) is shown in two places: as a section of the
bisection run it narrowed (whose result carries it under ``knobs``: the summary, the
report, the issue comment), and as the report of the narrow run itself. Pure functions of
the stored result, like the rest of the report modules.
"""

from __future__ import annotations

from envbisect.redact import redact


def _value(entry: dict) -> str:
    return f"{entry['knob']}={entry['value']}".replace("True", "true").replace("False", "false")


def knob_lines(result: dict, *, markdown: bool) -> list[str]:
    """The knob section of a result that carries one (``result["knobs"]``), else nothing."""
    k = result.get("knobs")
    if not k:
        return []
    bisector = (k.get("compiler_bisector") or {}).get("summary")
    if not markdown:
        lines = [f"  knob: {k['summary']} (narrow run {k.get('run_id')}, {k.get('probes', 0)} probes)"]
        return lines + ([f"  {bisector}"] if bisector else [])
    lines = ["", "#### The knob that flips it", "", f"**{k['summary']}**", ""]
    if k.get("settings"):
        lines.append("- **Minimal settings:** " + ", ".join(f"`{_value(e)}`" for e in k["settings"]))
    for key, title in (("also", "Good too"), ("coarse", "Coarser switches that are good too")):
        if k.get(key):
            lines.append(f"- **{title}:** " + ", ".join(f"`{_value(e)}`" for e in k[key]))
    if bisector:
        lines.append(f"- **{bisector.split(':', 1)[0]}:**{bisector.split(':', 1)[1]}")
    lines.append(f"- **Knobs tried:** {', '.join(f'`{n}`' for n in k.get('tried') or []) or 'none'} "
                 f"(narrow run {k.get('run_id')}: {k.get('probes', 0)} probes, {k.get('executed', 0)} executed)")
    if k.get("trials"):
        lines += ["", "<details><summary>Trials</summary>", ""]
        lines += [f"- {', '.join(_value(s) for s in t['settings']) or '(none)'}: {t['verdict']}" for t in k["trials"]]
        lines += ["", "</details>"]
    return lines


def text_lines(result: dict) -> list[str]:
    """What ``bisect narrow`` prints."""
    lines = [f"narrow {result.get('subject')} (run {result.get('narrows')}): {result.get('summary')}"]
    lines += knob_lines({"knobs": result}, markdown=False)[1:]
    for t in result.get("trials") or []:
        lines.append(f"  tried {', '.join(_value(s) for s in t['settings']) or '(none)'}: {t['verdict']}")
    lines.append(f"  probes: {result.get('probes', 0)}, {result.get('executed', 0)} executed, "
                 f"{result.get('duration_s', 0):.1f} s; run {result.get('run_id')}")
    return [redact(line) for line in lines]


def markdown(run: dict, probe_table: list[str]) -> str:
    """The Markdown report of a narrow run; ``probe_table`` comes from report.py."""
    result = run.get("result") or {}
    lines = [f"### envbisect narrow: {result.get('summary', run.get('status'))}", "",
             f"- **Narrowed:** the bad environment of run {result.get('narrows')}: {result.get('subject')}"]
    lines += knob_lines({"knobs": result}, markdown=True)[4:]
    lines += ["", "Probes:", "", *probe_table]
    return redact("\n".join(lines) + "\n")
