"""The progress renderer prints foreign text (recipe output, installer errors) as it is.

A recipe whose last stderr line held ``[/3]`` once raised rich's MarkupError in the
progress line on a terminal, and since the probe was stored, every rerun crashed again.
"""

from __future__ import annotations

import io

from rich.console import Console

from envbisect.policy import Judgement, Outcome
from envbisect.progress import Progress
from envbisect.search import Verdict


def test_labels_and_reasons_are_never_parsed_as_markup() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    reason = "uncaught ValueError: shape [/3] != [red]4[/red]"
    with Progress(console, enabled=True) as progress:
        progress.probe_started("1.0 [/3] [bold]", 1, 3)
        progress.probe_finished("1.0 [/3]", Judgement(Outcome.ERROR, Verdict.UNTESTABLE, reason), False)
        progress.note("resuming [/x]")
    text = buf.getvalue()
    assert "1.0 [/3]" in text and "shape [/3] != [red]4[/red]" in text and "resuming [/x]" in text
