"""The pure bisection state machine (placeholder: being written).

Knows nothing but ordered candidates and verdicts.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    """What the search learns from one candidate."""

    GOOD = "good"
    BAD = "bad"
    UNTESTABLE = "untestable"
