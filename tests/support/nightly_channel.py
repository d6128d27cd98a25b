"""A fake nightly channel (and the release index beside it) for integration tests.

Mimics a PyTorch-style channel on a :class:`LocalIndex`: ``torchlike`` nightlies
``1.2.0.devYYYYMMDD+cpu`` and ``+cu126`` (two variants, local labels, one HTML index),
each pinning a companion build ``companion==1.0.0+git1`` published on the same channel
(as torch nightlies pin ``pytorch-triton``), upload times on every file, and one night
without any build. The regression lands on a different night per variant, so a search
that mixed variants would name the wrong night. A release index carries ``torchlike``
releases (and a public ``companion`` of another version) for the release phase.

A tf-nightly-style channel is the other shape: ``tfsim-nightly`` ``2.1.0.devYYYYMMDD``
(no variants) on a JSON index next to ``tfsim`` releases, both importable as ``tfsim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from .index_server import LocalIndex
from .wheels import build_wheel

#: Channel nights: FIRST_NIGHT .. LAST_NIGHT, except MISSING_NIGHT (no build at all).
FIRST_NIGHT = date(2026, 2, 24)
LAST_NIGHT = date(2026, 3, 24)
MISSING_NIGHT = date(2026, 3, 10)
#: First night whose build carries the regression, per variant.
FIRST_BAD = {"cpu": date(2026, 3, 14), "cu126": date(2026, 3, 5)}
#: Releases of torchlike: (version, upload date, bad?). The nightly window between the
#: last good (1.1) and first bad (1.2) release is 2026-03-01 .. 2026-03-20.
RELEASES = (("1.0", date(2026, 2, 1), False), ("1.1", date(2026, 3, 1), False),
            ("1.2", date(2026, 3, 20), True), ("1.3", date(2026, 4, 10), True))
COMPANION_PIN = "1.0.0+git1"

#: The recipe body: bad when VALUE is 2; an error (not bad) when a nightly's companion
#: did not come from the nightly channel, so a wrong index order cannot pass unnoticed.
TORCHLIKE_BODY = """
import sys
import companion
import torchlike
if "dev" in torchlike.__version__ and companion.ORIGIN != "nightly":
    sys.exit(7)
sys.exit(0 if torchlike.VALUE == 1 else 1)
"""

TFSIM_BODY = """
import sys
import tfsim
sys.exit(0 if tfsim.VALUE == 1 else 1)
"""


def nightly_version(night: date, variant: str | None = None, base: str = "1.2.0") -> str:
    return f"{base}.dev{night:%Y%m%d}" + (f"+{variant}" if variant else "")


def nights() -> list[date]:
    days = (LAST_NIGHT - FIRST_NIGHT).days + 1
    return [FIRST_NIGHT + timedelta(days=n) for n in range(days) if FIRST_NIGHT + timedelta(days=n) != MISSING_NIGHT]


def _at(day: date, hour: int = 6) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone.utc)


def _module(name: str, version: str, value: int, **extra: str) -> dict[str, str]:
    lines = [f'__version__ = "{version}"', f"VALUE = {value}", *(f"{k} = {v!r}" for k, v in extra.items())]
    return {f"{name}/__init__.py": "\n".join(lines) + "\n"}


@dataclass
class TorchChannel:
    """The running nightly index and release index, and where each wheel went."""

    nightly: LocalIndex
    releases: LocalIndex | None
    wheels: dict[str, Path]  # version -> wheel file, for pruning

    def filename(self, version: str) -> str:
        return self.wheels[version].name

    def prune_file(self, version: str) -> None:
        """Make a listed build's file vanish while the listing still shows it (what a
        client sees when the channel prunes it between listing and download)."""
        (self.nightly.root / "files" / self.filename(version)).unlink()


def build_torch_channel(dest: Path, nightly: LocalIndex, releases: LocalIndex | None = None,
                        *, variants: tuple[str, ...] = ("cpu", "cu126")) -> TorchChannel:
    """Publish the torchlike nightly channel on ``nightly`` (and releases on ``releases``)."""
    dist = dest / "channel-dists"
    wheels: dict[str, Path] = {}
    companion = build_wheel(dist / "nightly", "companion", COMPANION_PIN,
                            files=_module("companion", COMPANION_PIN, 1, ORIGIN="nightly"))
    nightly.add(companion, upload_time=_at(FIRST_NIGHT, 1))
    for night in nights():
        for variant in variants:
            version = nightly_version(night, variant)
            value = 2 if night >= FIRST_BAD[variant] else 1
            wheel = build_wheel(dist / "nightly", "torchlike", version, requires_dist=[f"companion=={COMPANION_PIN}"],
                                files=_module("torchlike", version, value, VARIANT=variant))
            nightly.add(wheel, upload_time=_at(night))
            wheels[version] = wheel
    if releases is not None:
        for cver in ("1.0.0", "2.0.0"):  # public companions: never the pinned build
            releases.add(build_wheel(dist / "public", "companion", cver,
                                     files=_module("companion", cver, 1, ORIGIN="public")), upload_time=_at(date(2026, 1, 1)))
        for version, day, bad in RELEASES:
            wheel = build_wheel(dist / "public", "torchlike", version, requires_dist=["companion>=1"],
                                files=_module("torchlike", version, 2 if bad else 1))
            releases.add(wheel, upload_time=_at(day, 12))
            wheels[version] = wheel
    return TorchChannel(nightly, releases, wheels)


def build_tfsim(dest: Path, index: LocalIndex, *, first_bad: date = date(2026, 3, 14),
                with_releases: bool = True) -> dict[str, Path]:
    """Publish ``tfsim-nightly`` nightlies (2026-03-01 .. 03-20, a second build on 03-05,
    no build on 03-10) and, optionally, ``tfsim`` releases 2.0 (good) and 2.1 (bad)."""
    dist = dest / "tfsim-dists"
    wheels = {}
    for n in range(20):
        night = date(2026, 3, 1) + timedelta(days=n)
        if night == MISSING_NIGHT:
            continue
        stamps = [f"{night:%Y%m%d}"] + ([f"{night:%Y%m%d}18"] if night == date(2026, 3, 5) else [])
        for stamp in stamps:
            version = f"2.1.0.dev{stamp}"
            wheel = build_wheel(dist, "tfsim-nightly", version,
                                files=_module("tfsim", version, 2 if night >= first_bad else 1))
            index.add(wheel, upload_time=_at(night))
            wheels[version] = wheel
    if with_releases:
        for version, day, bad in (("2.0", date(2026, 2, 27), False), ("2.1", date(2026, 3, 18), True)):
            wheel = build_wheel(dist, "tfsim", version, files=_module("tfsim", version, 2 if bad else 1))
            index.add(wheel, upload_time=_at(day, 12))
            wheels[version] = wheel
    return wheels
