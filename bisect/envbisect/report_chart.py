"""A chart of a run's numeric metric against the probed versions (or days).

People would rather look than read: when the probes of a run carry a numeric metric, a
report shows it against the probed candidates, oldest first. The same :class:`Chart`
renders as a Mermaid ``xychart-beta`` block (GitHub draws it in issues and comments) and
as inline SVG (the standalone HTML page; no script, no external resource).

Pure: the chart is computed from the result's ``probes`` list, one point per probe that
has a finite value of the chosen metric. Version runs are ordered by version, date runs
by their cutoff and labelled with the day.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

#: Colours of the points by outcome (good, bad, skip, error); others are grey.
OUTCOME_COLOURS = {"good": "#1a7f37", "bad": "#cf222e", "skip": "#9a6700", "error": "#8250df"}


@dataclass(frozen=True)
class Point:
    label: str
    value: float
    outcome: str


@dataclass(frozen=True)
class Chart:
    """One numeric metric over the probed candidates, oldest first."""

    metric: str
    axis: str  # what the x axis is: the package, or "day"
    points: tuple[Point, ...]
    #: Probes that carried the metric without a finite value (NaN, inf): not drawn.
    left_out: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"{self.metric} by {self.axis}"


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chosen_metric(probes: list[dict], preferred: list[str] = ()) -> str | None:
    """The metric to chart: the first of ``preferred`` (the run's thresholds) that any probe
    carries as a number, else the numeric metric carried by most probes (first seen wins)."""
    counts: dict[str, int] = {}
    for p in probes:
        for key, value in (p.get("metrics") or {}).items():
            if _numeric(value):
                counts[key] = counts.get(key, 0) + 1
    for name in preferred:
        if name in counts:
            return name
    return max(counts, key=lambda k: counts[k]) if counts else None


def _order_key(label: str):
    try:
        return (0, Version(label), "")
    except InvalidVersion:
        return (1, Version("0"), label)


def chart_for(result: dict, preferred: list[str] = ()) -> Chart | None:
    """The chart of a run's result, or None when no probe carries a numeric metric."""
    probes = [p for p in result.get("probes") or [] if isinstance(p, dict)]
    metric = chosen_metric(probes, preferred)
    if metric is None:
        return None
    dated = result.get("kind") == "date"
    if dated:
        probes = sorted(probes, key=lambda p: p.get("cutoff") or p.get("version") or "")
    else:
        probes = sorted(probes, key=lambda p: _order_key(str(p.get("version"))))
    points, left_out = [], []
    for p in probes:
        value = (p.get("metrics") or {}).get(metric)
        label = str(p.get("version"))
        if dated:
            label = str(p.get("cutoff") or label)[:10]
        if _numeric(value) and math.isfinite(value):
            points.append(Point(label, float(value), str(p.get("outcome") or "")))
        elif value is not None:
            left_out.append(label)
    if not points:
        return None
    return Chart(metric, "day" if dated else str(result.get("package") or "version"), tuple(points), tuple(left_out))


def _number(value: float) -> str:
    return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def mermaid(chart: Chart) -> list[str]:
    """The Markdown lines of a Mermaid ``xychart-beta`` block (a line with its points)."""
    labels = ", ".join(json.dumps(p.label) for p in chart.points)
    values = ", ".join(_number(p.value) for p in chart.points)
    lines = ["```mermaid", "xychart-beta", f"    title {json.dumps(chart.title)}",
             f"    x-axis {json.dumps(chart.axis)} [{labels}]", f"    y-axis {json.dumps(chart.metric)}",
             f"    line [{values}]", "```"]
    if chart.left_out:
        lines.append(f"Not drawn (no finite {chart.metric}): {', '.join(chart.left_out)}")
    return lines


def _nice(value: float) -> str:
    return f"{value:.4g}"


def svg(chart: Chart, width: int = 720, height: int = 320) -> str:
    """The chart as one inline ``<svg>`` element: axes, a polyline, and one
    ``<circle class="point">`` per point (coloured by outcome, with a ``<title>``)."""
    left, right, top, bottom = 70, 20, 30, 60
    lo = min(0.0, *(p.value for p in chart.points))
    hi = max(p.value for p in chart.points)
    if hi == lo:
        hi = lo + 1.0
    n = len(chart.points)
    inner_w, inner_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (inner_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + inner_h * (1 - (v - lo) / (hi - lo))

    esc = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label="{esc(chart.title)}">',
             f'<title>{esc(chart.title)}</title>',
             f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" font-weight="bold">{esc(chart.title)}</text>',
             f'<line class="axis" x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" y2="{top + inner_h}" '
             'stroke="#555"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}" stroke="#555"/>']
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{_nice(v)}</text>')
    coords = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(chart.points))
    parts.append(f'<polyline fill="none" stroke="#0969da" stroke-width="2" points="{coords}"/>')
    step = max(1, math.ceil(n / 16))  # at most ~16 labels under the axis
    for i, p in enumerate(chart.points):
        colour = OUTCOME_COLOURS.get(p.outcome, "#6e7781")
        parts.append(f'<circle class="point" data-label="{esc(p.label)}" data-value="{_number(p.value)}" '
                     f'cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="5" fill="{colour}">'
                     f'<title>{esc(p.label)}: {_nice(p.value)} ({esc(p.outcome)})</title></circle>')
        if i % step == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{top + inner_h + 16}" text-anchor="middle" '
                         f'font-size="11">{esc(p.label)}</text>')
    parts.append(f'<text x="{left + inner_w / 2:.1f}" y="{height - 12}" text-anchor="middle">{esc(chart.axis)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
