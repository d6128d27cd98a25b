"""Candidate lists: which releases of a package can be tested on this machine, and why not.

Given the files an index lists (:mod:`envbisect.index`), this module decides, per
release, whether it is a bisection candidate for a *target* (a Python version and the
wheel tags that Python accepts on a platform) under a version range and the pre-release
and build-from-source rules. Every release it leaves out gets a :class:`Reason` so the
user learns *why* a range is thin or empty instead of staring at an empty list. It does
no HTTP and installs nothing: it is pure, so it is tested on canned file lists.
"""

from __future__ import annotations

import platform as _platform
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from packaging import tags as _tags
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.version import InvalidVersion, Version

from envbisect.errors import ConfigError
from envbisect.simple_api import DistFile, DistKind, raw_version

#: Platforms a target can be built for without running there (``--platform``).
KNOWN_PLATFORMS = ("macos-arm64", "macos-x86_64", "linux-x86_64", "linux-aarch64", "windows-amd64")
_NEWEST_MACOS = (15, 0)
_NEWEST_GLIBC_MINOR = 39


def _python_version(python: str) -> tuple[int, int]:
    try:
        release = Version(python).release
    except InvalidVersion:
        release = ()
    if len(release) < 2 or release[0] != 3:
        raise ConfigError(f"invalid Python version '{python}'; use the form 3.X, e.g. --python 3.11")
    return release[0], release[1]


def _host_platform() -> str:
    """This machine in the short names used by :data:`KNOWN_PLATFORMS`."""
    machine = _platform.machine().lower()
    if sys.platform == "darwin":
        return "macos-arm64" if machine in ("arm64", "aarch64") else "macos-x86_64"
    if sys.platform == "win32":
        return "windows-amd64" if machine in ("amd64", "x86_64") else f"windows-{machine}"
    return f"{sys.platform.rstrip('0123456789')}-{machine}"


def _linux_platforms(arch: str) -> list[str]:
    """manylinux tags newest first (with their legacy aliases), then plain linux_<arch>."""
    oldest = 5 if arch == "x86_64" else 17  # aarch64 wheels start at manylinux2014
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms = []
    for minor in range(_NEWEST_GLIBC_MINOR, oldest - 1, -1):
        platforms.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            platforms.append(f"{legacy[minor]}_{arch}")
    return [*platforms, f"linux_{arch}"]


def _target_tags(version: tuple[int, int], platforms: Sequence[str] | None) -> tuple[Tag, ...]:
    interpreter = f"cp{version[0]}{version[1]}"
    return (
        *_tags.cpython_tags(python_version=version, platforms=platforms),
        *_tags.compatible_tags(python_version=version, interpreter=interpreter, platforms=platforms),
    )


@dataclass(frozen=True)
class Target:
    """A Python version on a platform: the wheel tags an installer would accept there."""

    python_version: Version
    tags: tuple[Tag, ...]  # supported tags in priority order
    platform: str  # e.g. "linux-x86_64", "macos-arm64"

    @classmethod
    def host(cls, python: str | None = None) -> Target:
        """The running interpreter (``python=None``) or CPython ``3.X`` on this machine."""
        if python is None:
            version = sys.version_info[:2]
            return cls(Version(f"{version[0]}.{version[1]}"), tuple(_tags.sys_tags()), _host_platform())
        version = _python_version(python)
        tags = _target_tags(version, list(_tags.platform_tags()))
        return cls(Version(f"{version[0]}.{version[1]}"), tags, _host_platform())

    @classmethod
    def for_platform(cls, platform: str, python: str) -> Target:
        """CPython ``python`` on a named platform, with a plausible list of its tags.

        Used to ask "which releases would install on a Mac?" from Linux; the tag lists
        are what current installers accept on a recent OS of that kind.
        """
        if platform not in KNOWN_PLATFORMS:
            raise ConfigError(f"unknown platform '{platform}'; use one of: {', '.join(KNOWN_PLATFORMS)}")
        system, arch = platform.split("-")
        if system == "macos":
            platforms = list(_tags.mac_platforms(_NEWEST_MACOS, arch))
        elif system == "linux":
            platforms = _linux_platforms(arch)
        else:
            platforms = ["win_amd64"]
        version = _python_version(python)
        return cls(Version(f"{version[0]}.{version[1]}"), _target_tags(version, platforms), platform)

    def describe(self) -> str:
        """Short human form, e.g. ``cp311 linux-x86_64``."""
        return f"cp{self.python_version.major}{self.python_version.minor} {self.platform}"


class Reason(str, Enum):
    """Why a release is not a candidate (the value is what users read)."""

    YANKED = "yanked"
    PRERELEASE = "pre-release (use --pre)"
    NO_COMPATIBLE_WHEEL = "no wheel for this platform"
    REQUIRES_PYTHON = "requires a different Python"
    SDIST_ONLY = "source only (use --allow-build)"
    INVALID_VERSION = "version does not parse"
    OTHER_VARIANT = "another build variant (use --variant)"  # nightly channels, see nightly.py
    SAME_NIGHT = "an older build of the same night"


@dataclass(frozen=True)
class Candidate:
    """A release that can be installed on the target."""

    version: Version
    upload_time: datetime | None  # earliest upload time among the release's files
    files: tuple[DistFile, ...]  # the files that make it installable on the target
    needs_build: bool  # True when admitted only through an sdist (allow_build)


@dataclass(frozen=True)
class Excluded:
    """A release left out, with the reason and a detail a user can act on."""

    version: str
    reason: Reason
    detail: str  # e.g. "only wheels for: macos-arm64", "Requires-Python >=3.12"
    platforms: tuple[str, ...] = ()  # platforms that do have wheels (NO_COMPATIBLE_WHEEL)


def parse_specifier(text: str | None) -> SpecifierSet | None:
    """A PEP 440 range from user input; None for no range; ConfigError when invalid."""
    if text is None or not text.strip():
        return None
    try:
        # packaging skips empty clauses (">=1,,<2"); they are typos, so say so.
        if any(not clause.strip() for clause in text.split(",")):
            raise InvalidSpecifier("empty clause between commas")
        return SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise ConfigError(
            f"invalid version range '{text}': {exc}; use a PEP 440 specifier such as '>=1.2,<2'"
        ) from None


_MACOS_INTEL = {"x86_64", "intel", "fat64", "fat3", "fat32", "universal"}
_WINDOWS = {"win_amd64": "windows-amd64", "win32": "windows-x86", "win_arm64": "windows-arm64"}


def _platform_names(platform_tag: str) -> list[str]:
    """Short platform names for one wheel platform tag (universal2 is two of them)."""
    if platform_tag == "any":
        return ["any"]
    if mac := re.fullmatch(r"macosx_\d+_\d+_(\w+)", platform_tag):
        arch = mac.group(1)
        if arch == "universal2":
            return ["macos-arm64", "macos-x86_64"]
        return ["macos-x86_64" if arch in _MACOS_INTEL else f"macos-{arch}"]
    if linux := re.fullmatch(r"(?:manylinux(?:_\d+_\d+|\d+)|linux)_(\w+)", platform_tag):
        return [f"linux-{linux.group(1)}"]
    if musl := re.fullmatch(r"musllinux_\d+_\d+_(\w+)", platform_tag):
        return [f"musllinux-{musl.group(1)}"]
    return [_WINDOWS.get(platform_tag, platform_tag)]


def platforms_with_wheels(files: Iterable[DistFile]) -> list[str]:
    """Sorted short names of the platforms the wheels in ``files`` are built for."""
    names = {
        name
        for f in files
        if f.kind is DistKind.WHEEL
        for tag in f.tags
        for name in _platform_names(tag.platform)
    }
    return sorted(names)


def _python_admits(requires_python: str | None, python: Version) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        return True  # as pip does: metadata we cannot read does not hide a release


def _wheel_pythons(wheels: Iterable[DistFile]) -> str:
    interpreters = sorted({t.interpreter for w in wheels for t in w.tags}, key=lambda i: (len(i), i))
    return ", ".join(interpreters) if len(interpreters) <= 4 else f"{interpreters[0]}..{interpreters[-1]}"


def _judge(version: Version, files: list[DistFile], target: Target, allow_build: bool) -> Candidate | Excluded:
    """Decide one (in-range, allowed) release: candidate, or excluded with a reason."""
    label = str(version)
    live = [f for f in files if f.yanked is None]
    if not live:  # PEP 592: a release is yanked when every one of its files is
        reasons = sorted({f.yanked for f in files if f.yanked})
        return Excluded(label, Reason.YANKED, "; ".join(reasons) or "yanked without a reason")
    # Files that do not state Requires-Python inherit the release's (any file that does).
    release_rp = next((f.requires_python for f in live if f.requires_python), None)
    fits_python = [f for f in live if _python_admits(f.requires_python or release_rp, target.python_version)]
    needs_python = f"Requires-Python {release_rp}" if release_rp else "Requires-Python"
    times = [f.upload_time for f in files if f.upload_time is not None]
    upload_time = min(times) if times else None
    target_tags = set(target.tags)
    wheels = [f for f in live if f.kind is DistKind.WHEEL]
    fitting = [w for w in wheels if w.tags & target_tags]
    if fitting:
        usable = tuple(w for w in fitting if w in fits_python)
        if usable:
            return Candidate(version, upload_time, usable, needs_build=False)
        return Excluded(label, Reason.REQUIRES_PYTHON, needs_python)
    sdists = [f for f in live if f.kind is DistKind.SDIST]
    if sdists:
        buildable = tuple(s for s in sdists if s in fits_python)
        if not buildable:
            return Excluded(label, Reason.REQUIRES_PYTHON, needs_python)
        if allow_build:
            return Candidate(version, upload_time, buildable, needs_build=True)
        seen = platforms_with_wheels(wheels)
        detail = f"sdist only here; wheels for: {', '.join(seen)}" if seen else buildable[0].filename
        return Excluded(label, Reason.SDIST_ONLY, detail)
    # Wheels for this platform but another Python (cp312-only on 3.11) is a Python problem.
    target_platforms = {t.platform for t in target.tags}
    if any(t.platform in target_platforms for w in wheels for t in w.tags):
        return Excluded(label, Reason.REQUIRES_PYTHON, f"wheels only for {_wheel_pythons(wheels)}")
    seen = platforms_with_wheels(wheels)
    return Excluded(label, Reason.NO_COMPATIBLE_WHEEL, f"only wheels for: {', '.join(seen)}", tuple(seen))


def select(
    files: Iterable[DistFile],
    *,
    target: Target,
    specifier: str | SpecifierSet | None = None,
    pre: bool = False,
    allow_build: bool = False,
) -> tuple[list[Candidate], list[Excluded]]:
    """Split a project's releases into candidates and excluded ones, both ascending.

    Releases outside ``specifier`` are dropped silently (the user asked for that);
    pre- and dev-releases count only with ``pre=True`` or when the specifier itself
    names one (as pip does). Files whose version does not parse are reported once per
    spelling as INVALID_VERSION, after the others.
    """
    spec = parse_specifier(specifier) if not isinstance(specifier, SpecifierSet) else specifier
    allow_pre = pre or bool(spec is not None and spec.prereleases)
    releases: dict[Version, list[DistFile]] = defaultdict(list)
    invalid: dict[str, list[DistFile]] = defaultdict(list)
    for f in files:
        if f.version is None:
            invalid[raw_version(f)].append(f)
        else:
            releases[f.version].append(f)
    candidates: list[Candidate] = []
    excluded: list[Excluded] = []
    for version in sorted(releases):
        if spec is not None and not spec.contains(version, prereleases=True):
            continue
        if version.is_prerelease and not allow_pre:
            excluded.append(Excluded(str(version), Reason.PRERELEASE, ""))
            continue
        verdict = _judge(version, releases[version], target, allow_build)
        (candidates if isinstance(verdict, Candidate) else excluded).append(verdict)
    for text, group in sorted(invalid.items()):
        excluded.append(Excluded(text, Reason.INVALID_VERSION, group[0].filename))
    return candidates, excluded


_HINTS = {
    Reason.NO_COMPATIBLE_WHEEL: "bisect a package that has wheels here or run on {where}",
    Reason.PRERELEASE: "pass --pre to include pre-releases",
    Reason.SDIST_ONLY: "pass --allow-build to build from source",
    Reason.REQUIRES_PYTHON: "choose another --python",
    Reason.YANKED: "widen the range",
    Reason.INVALID_VERSION: "widen the range",
    Reason.OTHER_VARIANT: "pass --variant to choose another build variant",
    Reason.SAME_NIGHT: "widen the range",
}
_COUNTED = {  # (one, many)
    Reason.NO_COMPATIBLE_WHEEL: ("1 has no wheel for this platform", "{n} have no wheel for this platform"),
    Reason.PRERELEASE: ("1 is a pre-release", "{n} are pre-releases"),
    Reason.SDIST_ONLY: ("1 is source only", "{n} are source only"),
    Reason.REQUIRES_PYTHON: ("1 needs a different Python", "{n} need a different Python"),
    Reason.YANKED: ("1 is yanked", "{n} are yanked"),
    Reason.INVALID_VERSION: ("1 has an unparseable version", "{n} have unparseable versions"),
    Reason.OTHER_VARIANT: ("1 is another build variant", "{n} are other build variants"),
    Reason.SAME_NIGHT: ("1 is an older build of its night", "{n} are older builds of their night"),
}


def why_empty(
    excluded: Sequence[Excluded],
    target: Target,
    specifier: str | SpecifierSet | None,
    *,
    package: str | None = None,
) -> str:
    """One line saying why no release is a candidate, and what to do about it."""
    what = f"release of {package}" if package else "release"
    spec = str(specifier).strip() if specifier is not None else ""
    in_range = f" in '{spec}'" if spec else ""
    if not excluded:
        return f"no {what}{in_range} was found on the index; widen the range or check --index-url"
    counts = Counter(e.reason for e in excluded)
    seen = sorted({p for e in excluded for p in e.platforms})
    # Commonest reasons first; ties go to the reason whose hint is most actionable.
    ranked = sorted(counts, key=lambda r: (-counts[r], list(_HINTS).index(r)))
    parts = []
    for reason in ranked:
        n = counts[reason]
        part = _COUNTED[reason][n > 1].format(n=n)
        if reason is Reason.NO_COMPATIBLE_WHEEL:
            part += f" (wheels exist for {', '.join(seen)})" if seen else ""
        elif reason is Reason.REQUIRES_PYTHON:
            part += f" ({next(e.detail for e in excluded if e.reason is reason)})"
        parts.append(part)
    where = "a Mac" if seen and all(p.startswith("macos") for p in seen) else ", ".join(seen) or "another platform"
    # The two commonest reasons get a hint each; more would not fit on one line.
    hints = list(dict.fromkeys(_HINTS[r].format(where=where) for r in ranked))[:2]
    return f"no {what}{in_range} installs on {target.describe()}: {'; '.join(parts)}; {' or '.join(hints)}"
