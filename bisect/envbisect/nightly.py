"""Nightly channels: build dates, variants, one candidate per night, release -> nightly.

Nightly builds are dev releases whose dev number is the build date:
``2.12.0.dev20260315+cu126`` (a PyTorch nightly, CUDA 12.6 *variant* as the local
label), ``2.19.0.dev20250101`` (tf-nightly). A channel keeps only its newest builds,
skips nights, and serves several variants side by side, so bisecting one needs rules a
release list does not: candidates are ordered by build date, there is one per night
(the newest build of that night), exactly one variant is used (never mixed), and
nights without a build are reported, not invented.

This module owns those rules (:func:`arrange`, pure), how a nightly is shown
(``nightly 2026-03-15``), why an install of a listed build failed (pruned from the
channel, :func:`explain_install_failure`), and the two-phase search: bisect the
releases, then continue into the nightlies built between the last good and the first
bad release (:mod:`envbisect.nightly_runs`). It keeps no channel URL of its own: the user
names the channel (``--nightly-index`` / ``--nightly-package`` or the recipe's
``nightly-index`` / ``nightly-package`` settings).
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from packaging.version import InvalidVersion, Version

from envbisect.errors import ConfigError, NoCandidates
from envbisect.index import DistFile, IndexClient, IndexConfig
from envbisect.versions import Candidate, Excluded, Reason

# The dev number of a nightly: YYYYMMDD, optionally followed by an hour/minute stamp
# (keras-nightly uses YYYYMMDDHH). Only the date part orders nights.
_DEV_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})\d{0,6}")


def _version(value: Version | str) -> Version | None:
    if isinstance(value, Version):
        return value
    try:
        return Version(value)
    except InvalidVersion:
        return None


def build_date(version: Version | str) -> date | None:
    """The build date of a nightly version (``X.Y.devYYYYMMDD``), else None."""
    v = _version(version)
    if v is None or v.dev is None:
        return None
    stamp = _DEV_STAMP.fullmatch(str(v.dev))
    if stamp is None:
        return None
    try:
        return date(int(stamp.group(1)), int(stamp.group(2)), int(stamp.group(3)))
    except ValueError:  # dev20261399 is a number, not a date
        return None


def variant_of(version: Version | str) -> str | None:
    """The build variant of a version: its local label (``cpu``, ``cu126``), else None."""
    v = _version(version)
    return v.local if v is not None else None


def display(label: str | None) -> str:
    """How a version is shown to people: nightlies by date, ``nightly 2026-03-15 (VER)``."""
    if not label:
        return label or ""
    night = build_date(label)
    return f"nightly {night.isoformat()} ({label})" if night else label


def host_has_cuda() -> bool:
    """Whether an NVIDIA driver is present (then a CUDA variant fits this host)."""
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()


def _cuda_number(label: str) -> int:
    digits = re.fullmatch(r"cu(\d+)", label)
    return int(digits.group(1)) if digits else -1


def default_variant(variants: set[str], *, cuda: bool) -> tuple[str, str]:
    """The variant that fits this host, and why: the newest CUDA build when a driver is
    present, else ``cpu``, else the channel's only variant."""
    cuda_builds = sorted((v for v in variants if _cuda_number(v) >= 0), key=_cuda_number)
    if cuda and cuda_builds:
        return cuda_builds[-1], "host default: CUDA driver found"
    if "cpu" in variants:
        return "cpu", "host default: no CUDA driver found" if not cuda else "host default: no CUDA build"
    if len(variants) == 1:
        return next(iter(variants)), "the channel's only variant"
    raise ConfigError(f"cannot choose a build variant for this host among {', '.join(sorted(variants))}; "
                      "pass --variant with one of them")


@dataclass(frozen=True)
class Window:
    """The nightlies between two releases: by upload date when both dates are known,
    else by version (``2.11.0 < 2.12.0.dev20260315 < 2.12.0``)."""

    after: date | None = None
    until: date | None = None
    above: str | None = None  # the older release
    below: str | None = None  # the newer release

    def admits(self, version: Version) -> bool:
        night = build_date(version)
        if self.after is not None and self.until is not None and night is not None:
            return self.after <= night <= self.until
        public = Version(version.public)
        above, below = _version(self.above or ""), _version(self.below or "")
        return (above is None or public > above) and (below is None or public < below)

    def describe(self) -> str:
        if self.after is not None and self.until is not None:
            return f"{self.after.isoformat()} .. {self.until.isoformat()}"
        return f"versions between {self.above or '-'} and {self.below or '-'}"


@dataclass(frozen=True)
class Channel:
    """What :func:`arrange` decided about a nightly candidate list (shown and stored)."""

    variant: str | None
    variant_source: str
    builds: int
    first: date | None
    last: date | None
    missing_nights: tuple[date, ...]
    window: Window | None = None

    def describe(self, package: str) -> str:
        variant = f"variant {self.variant} ({self.variant_source})" if self.variant else "no variants"
        span = f"{self.first} .. {self.last}" if self.first else "none"
        gaps = f", {len(self.missing_nights)} night(s) without a build" if self.missing_nights else ""
        return f"nightlies of {package}: {variant}; {self.builds} build(s), {span}{gaps}"

    def as_dict(self) -> dict:
        return {"variant": self.variant, "variant_source": self.variant_source, "builds": self.builds,
                "first": _iso(self.first), "last": _iso(self.last),
                "missing_nights": [d.isoformat() for d in self.missing_nights],
                "window": self.window.describe() if self.window else None}


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def arrange(cands: list[Candidate], excluded: list[Excluded], *, package: str, variant: str | None = None,
            window: Window | None = None, nightly_only: bool = False,
            cuda: bool | None = None) -> tuple[list[Candidate], list[Excluded], Channel | None]:
    """Turn a candidate list into one nightly per build date of one variant, by date.

    Applies when asked (``variant``, ``window`` or ``nightly_only``) or when every
    candidate is a nightly (tf-nightly with ``--pre``); otherwise returns the lists as
    they are and no channel. Releases and builds outside ``window`` are dropped
    silently (the user asked for nightlies in that span); other variants and older
    builds of the same night are excluded with a reason.
    """
    nightly = [c for c in cands if build_date(c.version) is not None]
    if not (variant or window or nightly_only) and (not nightly or len(nightly) != len(cands)):
        return cands, excluded, None
    if window is not None:
        nightly = [c for c in nightly if window.admits(c.version)]
    span = f" built {window.describe()}" if window else ""
    if not nightly:
        raise NoCandidates(f"no nightly builds (X.Y.devYYYYMMDD) of {package}{span} are installable here; "
                           "check the nightly index (channels keep only recent builds) or widen the range")
    labels = {variant_of(c.version) for c in nightly}
    if labels == {None}:
        chosen, source = None, "unlabelled builds"
    elif variant:
        if variant not in labels:
            raise ConfigError(f"variant {variant!r} has no build of {package}{span}; available: "
                              f"{', '.join(sorted(v for v in labels if v))}; pass --variant with one of them")
        chosen, source = variant, "--variant"
    else:
        chosen, source = default_variant({v for v in labels if v}, cuda=host_has_cuda() if cuda is None else cuda)
    out = list(excluded)
    nights: dict[date, list[Candidate]] = defaultdict(list)
    for cand in nightly:
        label = variant_of(cand.version)
        if label != chosen:
            out.append(Excluded(str(cand.version), Reason.OTHER_VARIANT,
                                f"variant {label or 'unlabelled'}, not {chosen or 'unlabelled'}"))
        else:
            nights[build_date(cand.version)].append(cand)  # type: ignore[index]
    kept = []
    for night in sorted(nights):
        group = sorted(nights[night], key=lambda c: c.version)
        kept.append(group[-1])  # the newest build of the night stands for it
        out += [Excluded(str(c.version), Reason.SAME_NIGHT, f"{group[-1].version} is that night's newest build")
                for c in group[:-1]]
    first, last = (min(nights), max(nights))
    missing = tuple(first + timedelta(days=n) for n in range((last - first).days + 1)
                    if first + timedelta(days=n) not in nights)
    return kept, out, Channel(chosen, source, len(kept), first, last, missing, window)


def nights_between(channel: dict | None, old: str | None, new: str | None) -> list[str]:
    """Nights with no build strictly between two nightly versions (ISO dates)."""
    a, b = build_date(old or ""), build_date(new or "")
    if not channel or a is None or b is None:
        return []
    return [d for d in channel.get("missing_nights") or [] if a.isoformat() < d < b.isoformat()]


# --------------------------------------------------------------------- pruned builds


def explain_install_failure(reason: str, files: Sequence[DistFile], config: IndexConfig) -> str:
    """The installer's ``reason``, or "build pruned from the index" when every file the
    candidate was listed with is now gone from its index (HTTP 404/410 on a HEAD)."""
    remote = [f for f in files if f.url.startswith(("http://", "https://"))]
    if not remote:
        return reason
    with IndexClient(config, retries=1, timeout=10.0) as client:
        states = [client.file_exists(f.url) for f in remote]
    # HEAD says gone for every file; or it could not tell and the installer saw a 404.
    if all(state is False for state in states) or (True not in states and "404" in reason):
        return (f"build pruned from the index: {remote[0].filename} is no longer there (listed, then removed); "
                "channels keep only recent builds")
    return reason


# --------------------------------------------------------------------- two phases


@dataclass(frozen=True)
class ChannelConfig:
    """Where a package's nightlies live: an index to put first, and/or another name."""

    index_url: str | None = None  # e.g. a PyTorch nightly index; None: the usual indexes
    package: str | None = None  # e.g. tf-nightly for tensorflow; None: the same name
    variant: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.index_url or self.package)


def with_nightly_index(config: IndexConfig, url: str | None) -> IndexConfig:
    """``config`` with the nightly index consulted first.

    uv gives ``--extra-index-url`` indexes priority over ``--index-url`` and, by default
    (``first-index``), takes each package only from the first index that has it. So the
    nightly index goes first among the extras: the nightly package *and* the builds it
    pins from the same channel (``pytorch-triton``) come from there, everything else
    from the usual index, and a same-named package elsewhere can never shadow them.
    """
    if not url:
        return config
    url = url.rstrip("/")
    return replace(config, extra_index_urls=(url, *(u for u in config.extra_index_urls if u != url)))


def window_between(result: dict) -> Window:
    """The nightly window between a release phase's two boundary releases."""
    old_key, new_key = ("last_bad", "first_good") if result.get("find_fix") else ("last_good", "first_bad")
    old, new = result.get(old_key), result.get(new_key)
    uploaded = {p["version"]: p.get("upload_time") for p in result.get("probes") or []}
    after, until = (datetime.fromisoformat(uploaded[v]).date() if uploaded.get(v) else None for v in (old, new))
    return Window(after, until, old, new)
