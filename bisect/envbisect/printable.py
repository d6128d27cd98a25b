"""What a recipe printed, made safe to show: on a terminal, in a report, in an issue comment.

Probe layer. A probe's output tails are shown by ``bisect check``, in reasons (an uncaught
exception's last line), in reports and in the comments ``bisect attach`` and the daemon
post. Raw, a recipe's control characters would act there, not read: ``ESC [2J`` clears the
user's terminal, an OSC sequence sets its title or (OSC 52) writes its clipboard, a C1
character is a control to some terminals, and U+202E displays the rest of a line reversed
(the "Trojan Source" trick). So a tail is kept printable when it is captured
(:mod:`envbisect.runner`): colour and other escape sequences are dropped (a coloured
``FAILED`` reads, and matches a signature, as ``FAILED``), a carriage return becomes a
line break (a progress bar's frames become lines), and any other control or bidirectional
formatting character is written as its escape (``\\x07``, ``\\u202e``). Tab and newline
stay. The full output stays in the probe's log as the recipe wrote it.

The same holds for the names and strings of the metrics a recipe writes
(:mod:`envbisect.metrics`), for the text an index serves that envbisect shows (a yanked
reason, a Requires-Python, a filename it cannot parse: :mod:`envbisect.simple_api`; an
install failure's reason, which quotes uv quoting the index: :func:`envbisect.installer.install_reason`), and
for every line of the watch daemon's log (:func:`envbisect.watchdaemon.scrub`: a
request's error quotes the issue comment that asked, which anyone may write).
"""

from __future__ import annotations

import re

#: CSI sequences (colours, cursor moves, "clear screen"), OSC sequences (ended by BEL or
#: ST, or unterminated), and the other two-character escapes.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
#: C0 controls but tab and newline, DEL, C1 controls, and the bidirectional marks,
#: embeddings, overrides and isolates.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with escape sequences dropped, carriage returns as line breaks, and every
    other control or bidirectional formatting character written as its escape."""
    if text.isprintable():  # none of them (the usual case: an index's file names, per file)
        return text
    text = _ESCAPES.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                         else f"\\u{ord(m.group()):04x}", text)


def printable_json(value: object) -> object:
    """A parsed JSON value (the recipe's metrics) with every key and string printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): printable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable_json(v) for v in value]
    return value
