"""Text and Markdown renderings of matrix runs, date runs and culprit sections.

:mod:`envbisect.report` renders version bisections and dispatches here for runs of kind
``matrix`` and ``date``. Like it, everything is a pure function of the stored result
(and probe rows), so ``bisect show`` / ``bisect report`` can render a run at any time.

* A matrix with two axes is a grid, one axis per dimension; with one or more than two
  axes it is one row per combination. Each cell shows the outcome and the recipe's
  main metric; incompatible cells say so (their resolver reason is in the probe table).
* A date run is a timeline: each instant, what was published then, and the outcome
  where it was probed; then the culprit section.
"""

from __future__ import annotations

from envbisect import report_knobs, sourcerange
from envbisect.redact import redact

_SHORT = {"good": "good", "bad": "BAD", "skip": "skip", "error": "error", "incompatible": "incompatible"}


def cell_text(cell: dict) -> str:
    """``BAD max_abs_diff=41.7`` / ``incompatible`` / ``good``."""
    text = _SHORT.get(cell.get("outcome") or "", cell.get("outcome") or "?")
    if cell.get("metric"):
        name, value = cell["metric"]
        text += f" {name}={value:.4g}" if isinstance(value, float) else f" {name}={value}"
    return text + (" (flaky)" if cell.get("flaky") else "")


def grid(result: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the matrix table: a 2-D grid for two axes, else one row per cell."""
    axes, cells = result.get("axes") or [], result.get("cells") or []
    if len(axes) == 2:
        first, second = axes
        by = {(c["versions"].get(first["package"]), c["versions"].get(second["package"])): c for c in cells}
        header = [f"{first['package']} \\ {second['package']}", *second["versions"]]
        rows = [[v1, *(cell_text(by[(v1, v2)]) if (v1, v2) in by else "" for v2 in second["versions"])]
                for v1 in first["versions"]]
        return header, rows
    header = [*(a["package"] for a in axes), "outcome"]
    return header, [[*(c["versions"].get(a["package"], "") for a in axes), cell_text(c)] for c in cells]


def _counts(result: dict) -> str:
    cells = result.get("cells") or []
    return (f"{len(cells)} cells: {len(result.get('bad') or [])} bad, {result.get('incompatible', 0)} incompatible "
            f"(resolved only), {result.get('executed', 0)} recipe runs")


def headline(result: dict) -> str:
    """One line for ``history``, ``show`` and the top of reports."""
    if result.get("kind") == "matrix":
        names = " × ".join(a["package"] for a in result.get("axes") or [])
        bad = result.get("bad") or []
        return f"matrix {names}: " + (f"bad in {', '.join(bad)}" if bad else "no bad cell")
    status = result.get("status")
    if status == "found":
        line = f"first bad day: {result.get('first_bad')} (last good: {result.get('last_good')})"
    elif status == "inconclusive" and result.get("last_good") and result.get("first_bad"):
        line = (f"changed between {result['last_good']} and {result['first_bad']}; untestable in between: "
                f"{', '.join(result.get('untestable_between') or []) or 'none'}")
    else:
        line = {"not-reproduced": "not reproduced: the newest instant is still good",
                "predates-range": "predates the window: the oldest instant is already bad"}.get(status, str(status))
    culprit = result.get("culprit")
    return line + (f"; {culprit['summary']}" if culprit else "")


def _releases(row: dict) -> str:
    return ", ".join(f"{r['package']} {r['version']}" for r in row.get("releases") or []) or "(start of window)"


def _moves(changes: list[dict]) -> str:
    return ", ".join(f"{c['package']} {c['from'] or '—'} → {c['to'] or '—'}" for c in changes)


def culprit_section(result: dict, *, markdown: bool) -> list[str]:
    """The culprit section: what moved between last good and first bad, what was tried."""
    culprit = result.get("culprit")
    if not culprit:
        return []
    if not markdown:
        lines = [f"  {culprit['summary']}"]
        lines += [f"  changed: {c['package']} {c['from'] or '—'} -> {c['to'] or '—'}" for c in culprit["changes"]]
        return lines
    lines = ["", "#### Culprit", "", f"**{culprit['summary']}**", "",
             f"Changed between {result.get('last_good')} and {result.get('first_bad')}:", "",
             "| package | last good | first bad | culprit |", "|---|---|---|---|"]
    blamed = {c["package"] for c in culprit["culprits"]}
    lines += [f"| {c['package']} | {c['from'] or '—'} | {c['to'] or '—'} | {'**yes**' if c['package'] in blamed else ''} |"
              for c in culprit["changes"]]
    if culprit.get("trials"):
        lines += ["", "Tried on top of the last good environment:", ""]
        lines += [f"- {_moves(t['changes'])}: {t['verdict']}" for t in culprit["trials"]]
    return lines


def text_lines(result: dict) -> list[str]:
    """What ``bisect matrix`` / ``bisect run --by date`` print at the end."""
    lines = [headline(result)]
    if result.get("kind") == "matrix":
        header, rows = grid(result)
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for row in (header, *rows):
            lines.append("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
        lines.append(f"  {_counts(result)}; {result.get('duration_s', 0):.1f} s; run {result.get('run_id')}")
    else:
        for row in result.get("timeline") or []:
            mark = f"[{row['outcome']}]" if row.get("outcome") else ""
            lines.append(f"  {row['instant']:<22} {mark:<10} {_releases(row)}")
        lines += culprit_section(result, markdown=False)
        lines += [f"  {line}" for line in sourcerange.summary_lines(result)]
        lines += report_knobs.knob_lines(result, markdown=False)
        lines.append(f"  probes: {len(result.get('probes') or [])} on the timeline + {result.get('culprit_probes', 0)} "
                     f"for the culprit, {result.get('executed', 0)} executed, "
                     f"{result.get('candidates', '?')} instants, {result.get('duration_s', 0):.1f} s; run {result.get('run_id')}")
    lines += [f"  reproduce: {cmd}" for cmd in result.get("reproduce") or []]
    return [redact(line) for line in lines]


def recipe_line(run: dict) -> str:
    """The report's recipe bullet: the path as the user gave it (an absolute local path
    would leak a home directory into a public issue comment) and the content hash."""
    result = run.get("result") or {}
    path = result.get("recipe") or run.get("recipe_path")
    return f"- **Recipe:** `{path}` (sha256 `{(run.get('recipe_hash') or '')[:12]}`)"


def body(run: dict, probes: list[dict], probe_table: list[str]) -> list[str]:
    """The Markdown lines of a matrix or date run's report up to the footer;
    ``probe_table`` comes from report.py, which adds the footer and the other sections."""
    result = run.get("result") or {}
    lines = [f"### envbisect: {headline(result)}", "", recipe_line(run)]
    if result.get("with"):
        lines.append(f"- **Pinned:** {', '.join(result['with'])}")
    if run.get("kind") == "matrix":
        lines.append(f"- **Grid:** {_counts(result)}, for {result.get('target', '?')}")
        header, rows = grid(result)
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        window = f"{result.get('since') or 'first release'} → {result.get('until') or 'now'}"
        lines.append(f"- **Timeline:** releases of {', '.join(result.get('packages') or [])}, {window}, "
                     f"{result.get('candidates', '?')} instants for {result.get('target', '?')}")
        lines += ["", "| instant | published | outcome |", "|---|---|---|"]
        lines += [f"| {r['instant']} | {_releases(r)} | {r.get('outcome') or ''} |" for r in result.get("timeline") or []]
        lines += culprit_section(result, markdown=True)
        lines += sourcerange.markdown_lines(result)
        lines += report_knobs.knob_lines(result, markdown=True)
    return lines + ["", "Probes:", "", *probe_table]


def footer(run: dict, counted: str, note: list[str] = ()) -> list[str]:
    """The closing lines of every Markdown report: host, versions, cost, and the
    ``Reproduce with:`` block (after ``note``, when given)."""
    result = run.get("result") or {}
    host = result.get("host") or {}
    lines = ["", f"Host: {host.get('os', '?')} {host.get('machine', '')}, Python {host.get('python', '?')}; "
                 f"envbisect {result.get('envbisect', '?')}; run {run.get('id')}, {counted} "
                 f"({result.get('executed', 0)} executed) in {result.get('duration_s', 0):.1f} s"]
    if result.get("reproduce"):
        lines += ["", "Reproduce with:", "", *note, "```sh", *result["reproduce"], "```"]
    return lines
