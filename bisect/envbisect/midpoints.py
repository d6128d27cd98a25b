"""Stable midpoints, the probe points of :mod:`envbisect.search` (pure core).

As cargo-bisect-rustc does (rust-lang/cargo-bisect-rustc#372): the
exact middle depends on ``lo`` and ``hi``, so two searches over the same candidates
with different bounds would hardly ever probe the same index. Instead, a window with
``m`` untested candidates, which needs ``s = ceil(log2(m + 1))`` probes in the worst
case, may be split at any of them that leaves at most ``2**(s-1) - 1`` untested
candidates on each side: the count stays exactly ``s``. Those positions form a band
around the middle (one candidate when ``m = 2**s - 1``, wider the further ``m`` is
below it), and the probe is the one whose absolute index has the most trailing zero
bits (a multiple of 128 before one of 64 and so on; index 0 counts as the roundest),
the one nearest the middle on a tie, then the lower. A rerun with new bounds, or a
search resumed from another's verdicts, then mostly lands on indices whose verdicts
are already stored instead of testing new ones. Untestable candidates are not counted
in ``m``; each one probed costs one extra probe, as with ``git bisect skip``.

A round of ``k`` parallel probes (``--jobs k``) splits the window evenly instead
(:func:`split_evenly`: ``k + 1`` near-equal parts).
"""

from __future__ import annotations


def ceil_log2(count: int) -> int:
    """Binary-search steps needed to tell apart ``count`` outcomes (0 for count <= 1)."""
    return max(count - 1, 0).bit_length()


#: The alignment given to index 0, which has no set bit at all: more than any other.
_ZERO_ALIGNMENT = 1 << 62


def _alignment(index: int) -> int:
    """Trailing zero bits of ``index`` (how round it is); 0 counts as the roundest."""
    return (index & -index).bit_length() - 1 if index else _ZERO_ALIGNMENT


def stable_midpoint(untested: tuple[int, ...], busy: set[int]) -> int | None:
    """The stable midpoint of ``untested`` (ascending, non-empty), ``busy`` ones excepted.

    A position ``p`` keeps the remaining probes optimal when neither side has more than
    ``2**(s-1) - 1`` untested candidates, ``s = ceil(log2(m + 1))``; among those the
    index with the most trailing zero bits, then the one nearest the middle, then the
    lower. None when every allowed position is busy.
    """
    m = len(untested)
    side = (1 << (ceil_log2(m + 1) - 1)) - 1  # most candidates one side may keep
    allowed = [p for p in range(m - 1 - side, side + 1) if untested[p] not in busy]
    if not allowed:
        return None
    best = min(allowed, key=lambda p: (-_alignment(untested[p]), abs(2 * p - (m - 1)), p))
    return untested[best]


def split_evenly(a: int, b: int, free: list[int], k: int) -> list[int]:
    """Up to ``k`` of ``free`` (the untested candidates inside the window ``(a, b)``)
    nearest its ``k`` evenly spaced cut points: the window in ``k + 1`` near-equal parts
    (a round of ``k`` parallel probes, where a stable midpoint serves one at a time)."""
    free, chosen = list(free), []
    for j in range(1, k + 1):
        if not free:
            break
        # Nearest to the j-th of k evenly spaced cut points; ties go to the lower
        # index, so a skipped midpoint is replaced alternately below and above it.
        target = (k + 1 - j) * a + j * b
        best = min(free, key=lambda i: (abs((k + 1) * i - target), i))
        chosen.append(best)
        free.remove(best)
    return chosen
