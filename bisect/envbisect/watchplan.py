"""What a watch check must judge, and when the next check is due: pure decisions, no I/O.

A watch remembers the *set* of releases it has seen (and the verdicts it learned), so a
release is new when it is listed and not in that set, whatever its version: a backport
such as 2.15.2 published after 2.16.0 is new and is judged.

Judging a batch. The new releases are cut into *batches*: runs of new releases that are
adjacent in version order, not separated by a release with a known verdict (seen releases
without a verdict, such as the history before the first check, do not cut a batch). Each
batch is compared with its *anchor*, the nearest release below it that has a good or bad
verdict and is still listed (a yanked anchor is skipped, so a yank never makes the same
check fail again and again). In a batch of at most ``limit`` releases every release is
probed, newest first; in a larger one ``limit`` releases spread evenly over the batch,
always including the newest. Walking anchor, probe, probe, ... every adjacent pair whose
verdicts differ is bisected: good then bad is a regression, bad then good a fix. So a
regression introduced and fixed inside one batch (anchor good, newest good again) is
found and reported as introduced in X, fixed in Y, as long as one probe lands on a bad
release; with every release probed (batches up to ``limit``) it always does. Cost per
batch: at most ``limit`` probes, plus about log2(gap) per change found.

Scheduling: a check that succeeds is due again ``every`` seconds after it started; a
failed one backs off exponentially (:func:`backoff_s`), so a broken index or a yanked
release costs one logged error per back-off step, not one per cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Verdicts that anchor a comparison (an untestable release says nothing either way).
DECISIVE = ("good", "bad")
#: Default number of releases of one batch probed directly (see the module docstring).
DEFAULT_BATCH_PROBES = 4
#: The longest back-off after failed checks, unless twice the interval is longer.
BACKOFF_CAP_S = 7 * 24 * 3600.0
#: A watch due within this share of its interval (at most GRACE_MAX_S) counts as due, so
#: a cron schedule equal to ``every`` is not skipped because the last check ended late.
GRACE_SHARE = 0.05
GRACE_MAX_S = 600.0


@dataclass(frozen=True)
class Batch:
    """Adjacent new releases (ascending) and the judged release they are compared with."""

    anchor: str | None
    releases: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """Adjacent judged releases whose verdicts differ: bisect between ``old`` and ``new``."""

    old: str
    new: str
    fix: bool  # bad -> good


def new_releases(listed: Iterable[str], seen: Iterable[str]) -> list[str]:
    """The listed releases that were never seen, in listing (version) order."""
    known = set(seen)
    return [v for v in listed if v not in known]


def batches(listed: list[str], verdicts: Mapping[str, str | None], new: Iterable[str]) -> list[Batch]:
    """Cut the ``new`` releases of ``listed`` (ascending) into batches with their anchors.

    ``verdicts`` maps seen releases to ``good``/``bad``/``untestable`` or ``None``."""
    fresh, out = set(new), []
    anchor: str | None = None
    current: list[str] = []
    for version in listed:
        if version in fresh:
            current.append(version)
        elif verdicts.get(version) in DECISIVE:
            if current:
                out.append(Batch(anchor, tuple(current)))
                current = []
            anchor = version
    if current:
        out.append(Batch(anchor, tuple(current)))
    return out


def sample(releases: tuple[str, ...] | list[str], limit: int) -> list[str]:
    """The releases of a batch to probe directly, ascending; the newest is always one."""
    n = len(releases)
    if n <= limit:
        return list(releases)
    return [releases[round((i + 1) * n / limit) - 1] for i in range(limit)]


def probe_order(picks: list[str]) -> list[str]:
    """The newest first (its verdict is the news), then the rest ascending."""
    return picks[-1:] + picks[:-1]


def changes(chain: Iterable[tuple[str, str | None]]) -> list[Change]:
    """Adjacent pairs of a (version, verdict) chain whose decisive verdicts differ;
    untestable or unknown links are stepped over."""
    out: list[Change] = []
    last: tuple[str, str] | None = None
    for version, verdict in chain:
        if verdict not in DECISIVE:
            continue
        if last is not None and last[1] != verdict:
            out.append(Change(last[0], version, fix=verdict == "good"))
        last = (version, verdict)
    return out


def backoff_s(every_s: float, failures: int) -> float:
    """Seconds until the next try after ``failures`` consecutive failed checks (>= 1):
    twice the interval, then four times, ... capped at max(2 x interval, a week)."""
    cap = max(2 * every_s, BACKOFF_CAP_S)
    return min(every_s * 2 ** min(max(failures, 1), 32), cap)


def grace_s(every_s: float) -> float:
    """How early a check may run and still count as on time (see GRACE_SHARE)."""
    return min(every_s * GRACE_SHARE, GRACE_MAX_S)
