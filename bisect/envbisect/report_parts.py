"""The sections of a self-contained report, and their Markdown rendering.

A report is a list of :class:`Section`: Markdown lines, optionally collapsed under a
``<details>`` summary, optionally a chart. :mod:`envbisect.report` lists which sections a
run's report has; this module holds the sections that make a report stand on its own
(the recipe's source, the output of the probes either side of the boundary, every
metric in full, the chart) and renders a list of sections as
Markdown. :mod:`envbisect.report_html` renders the same list as an HTML page, so a new
section (another helper's per-output differences, say) appears in both by being added
to the list once.

Pure: every function takes the run row, its probe rows, or its result.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field

from envbisect.redact import redact_source
from envbisect.report_chart import Chart, chart_for, mermaid

#: Lines and characters of each output stream a report keeps (the end of it).
TAIL_LINES = 40
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Section:
    """One part of a report: Markdown lines, collapsed under ``summary`` when given,
    and a chart drawn after them (Mermaid in Markdown, inline SVG in HTML)."""

    lines: list[str] = field(default_factory=list)
    summary: str | None = None
    chart: Chart | None = None


def render_markdown(sections: list[Section]) -> str:
    """The Markdown of a report: sections separated by blank lines; collapsed ones in
    ``<details>`` (GitHub renders Markdown inside after a blank line)."""
    out: list[str] = []
    for s in sections:
        body = list(s.lines) + (mermaid(s.chart) if s.chart else [])
        if not body:
            continue
        if s.summary:
            body = [f"<details><summary>{html.escape(s.summary)}</summary>", "", *body, "", "</details>"]
        out += (["", *body] if out else body)
    return "\n".join(out) + "\n"


def cell(value) -> str:
    """A value as a Markdown table cell: full text, ``|`` escaped, one line."""
    if isinstance(value, float):
        text = repr(value) if math.isfinite(value) else ("NaN" if math.isnan(value) else str(value))
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def fenced(text: str, lang: str = "") -> list[str]:
    """``text`` in a code fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, *text.rstrip("\n").splitlines(), fence]


def chart_section(run: dict, probes: list[dict]) -> Section:
    """The chart of the run's numeric metric (the threshold's metric first), if any."""
    result = run.get("result") or {}
    thresholds = ((run.get("settings") or {}).get("judging") or {}).get("thresholds") or []
    preferred = [re.split(r"[<>=!]", str(t), maxsplit=1)[0].strip() for t in thresholds]
    return Section(chart=chart_for(result, preferred))


def metrics_section(run: dict, probes: list[dict]) -> Section:
    """Every metric of every probe row in full: one row per probe, one column per metric."""
    rows = [p for p in probes if p.get("metrics")]
    if not rows:
        return Section()
    keys: list[str] = []
    for p in rows:
        keys += [k for k in p["metrics"] if k not in keys]
    lines = ["| # | version | " + " | ".join(cell(k) for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for p in rows:
        attempt = f".{p['attempt']}" if p.get("attempt", 1) > 1 else ""
        lines.append(f"| {p.get('seq')}{attempt} | {cell(p.get('version'))} | "
                     + " | ".join(cell(p["metrics"].get(k)) for k in keys) + " |")
    return Section(lines, summary=f"Metrics ({len(keys)} per probe, in full)")


def _tail(text: str) -> str:
    lines = text.rstrip("\n").splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


def boundary_rows(result: dict, probes: list[dict], old_key: str, new_key: str) -> list[tuple[str, dict]]:
    """(what, probe row) for the probes either side of the boundary (first attempt of each)."""
    found = []
    for key in (old_key, new_key):
        version = result.get(key)
        row = next((p for p in probes if version is not None and p.get("version") == version), None)
        if row is not None:
            found.append((key.replace("_", " "), row))
    return found


def tails_section(run: dict, probes: list[dict], old_key: str, new_key: str) -> Section:
    """The end of stdout and stderr of the last good and first bad probes."""
    lines: list[str] = []
    for what, row in boundary_rows(run.get("result") or {}, probes, old_key, new_key):
        for stream in ("stdout", "stderr"):
            text = row.get(f"{stream}_tail") or ""
            if text.strip():
                lines += [f"**{what} {row.get('version')}, {stream}** (last lines):", "", *fenced(_tail(text)), ""]
        if not any((row.get(f"{s}_tail") or "").strip() for s in ("stdout", "stderr")):
            lines += [f"**{what} {row.get('version')}:** no output", ""]
    return Section(lines[:-1] if lines else [], summary="Output of the probes either side of the boundary")


def recipe_section(run: dict, probes: list[dict]) -> Section:
    """The recipe's source as the run ran it (stored by hash), collapsed; secret-looking
    values in it are hidden (:func:`envbisect.redact.redact_source`)."""
    result = run.get("result") or {}
    name = str(result.get("recipe") or run.get("recipe_path") or "recipe.py")
    text = run.get("recipe_text")
    if not text:
        return Section([f"The text of `{name}` was not recorded (the run predates recorded recipes)."])
    return Section(fenced(redact_source(text), "python"),
                   summary=f"Recipe {name} (sha256 {(run.get('recipe_hash') or '')[:12]})")


def reproduce_note(result: dict) -> list[str]:
    """A line before the commands when the recipe is not beside them: save it from above."""
    name = str(result.get("recipe") or "")
    if name.startswith("/") or name.startswith(".."):
        return [f"(The recipe is shown above; save it and pass its path in place of `{name}`.)", ""]
    return []
