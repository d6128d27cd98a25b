"""Live progress for long runs, rendered with rich on stderr (silent when not a TTY).

Implements the session's ``Handler``: current version, probe n of about N (the search's
own estimate), elapsed time; one line per finished probe stays on screen. Labels and
reasons are foreign text (recipe output, installer errors): they are never parsed as rich
markup, so a ``[/3]`` in a recipe's last stderr line prints as it is.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from envbisect.redact import redact
from envbisect.policy import Judgement

_STYLE = {"good": "green", "bad": "red", "skip": "yellow", "error": "magenta"}


class Progress:
    """Session handler that draws a spinner line and logs each finished probe."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self._bar: RichProgress | None = None
        self._task = None
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._bar = RichProgress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                     TimeElapsedColumn(),
                                     console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=None)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def probe_started(self, label: str, step: int, estimate: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"probe {step} of ~{max(step, estimate)}: {label}")

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None:
        if self.enabled:
            line = Text(f"  {label}: ")
            line.append(judgement.outcome.value, style=_STYLE.get(judgement.outcome.value, ""))
            line.append(f" {redact(judgement.reason)}{' (recorded)' if reused else ''}")
            self.console.print(line, highlight=False)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(redact(message), markup=False, highlight=False)
