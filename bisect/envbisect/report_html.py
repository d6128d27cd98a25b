"""``bisect report RUN --format html``: one standalone HTML page.

The page is the Markdown report's sections (:func:`envbisect.report.sections`) rendered
with markdown-it: the same answer, probe table, environment diff, metrics, outputs and
recipe, with the chart as inline SVG instead of Mermaid. Standalone: one file, styles
inline, no script and no external resource, so it opens from a mail attachment or a CI
artifact as it is. Raw HTML in the text is never passed through (``html=False``): probe
outputs and reasons are foreign text, and a ``<script>`` in a recipe's stderr must show
as text, not run.
"""

from __future__ import annotations

import html

from markdown_it import MarkdownIt

from envbisect.redact import redact
from envbisect.report_chart import svg
from envbisect.report_parts import Section

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.9em; }
details { margin: 0.8rem 0; }
summary { cursor: pointer; font-weight: 600; }
svg.chart { max-width: 100%; height: auto; }
"""


def _renderer() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def page(title: str, sections: list[Section]) -> str:
    """The HTML document of a report made of ``sections``."""
    md = _renderer()
    body: list[str] = []
    for s in sections:
        inner = md.render(redact("\n".join(s.lines))) if s.lines else ""
        if s.chart is not None:
            inner += f'<figure class="chart">\n{svg(s.chart)}\n</figure>\n'
        if not inner:
            continue
        if s.summary:
            inner = f"<details><summary>{html.escape(redact(s.summary))}</summary>\n{inner}</details>\n"
        body.append(inner)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(redact(title))}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "".join(body) + "</body>\n</html>\n")
