"""Progress for long runs, rendered with rich on stderr.

Implements the session's ``Handler``. On a terminal: a live line with the current version,
probe n of about N (the search's own estimate) and the elapsed time, and one line per
finished probe stays on screen. Without a terminal (a CI log, a pipe): no live line and
no control codes, one plain line per finished probe, with n of about N and the elapsed
time, so a log shows where a run stands. ``-q`` (``enabled=False``) prints nothing. Labels and
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

    def __init__(self, console: Console, *, enabled: bool, live: bool | None = None) -> None:
        self.console = console
        self.enabled = enabled
        #: A live spinner line (a terminal) or plain lines (anything else).
        self.live = console.is_terminal if live is None else live
        self._bar: RichProgress | None = None
        self._task = None
        self._start = time.monotonic()
        self._steps: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> Progress:
        if self.enabled and self.live:
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
        self._steps[label] = (step, max(step, estimate))
        if self._bar is not None:
            self._bar.update(self._task, description=f"probe {step} of ~{max(step, estimate)}: {label}")

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None:
        if self.enabled and not self.live:
            step = self._steps.pop(label, None)
            where = f"probe {step[0]} of ~{step[1]}: " if step else ""
            self.console.print(f"{where}{label}: {judgement.outcome.value} {' '.join(redact(judgement.reason).split())}"
                               f"{' (recorded)' if reused else ''} [{time.monotonic() - self._start:.0f} s]",
                               markup=False, highlight=False, soft_wrap=True)
        elif self.enabled:
            line = Text(f"  {label}: ")
            line.append(judgement.outcome.value, style=_STYLE.get(judgement.outcome.value, ""))
            line.append(f" {redact(judgement.reason)}{' (recorded)' if reused else ''}")
            self.console.print(line, highlight=False)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(redact(message), markup=False, highlight=False, soft_wrap=not self.live)
