"""Candidate selection, targets and the "why is the list empty" line (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from envbisect.errors import ConfigError
from envbisect.index import dist_file
from envbisect.versions import (
    KNOWN_PLATFORMS,
    Candidate,
    Excluded,
    Reason,
    Target,
    parse_specifier,
    platforms_with_wheels,
    select,
    why_empty,
)

LINUX = Target.for_platform("linux-x86_64", "3.11")
MAC = Target.for_platform("macos-arm64", "3.11")

PURE = "py3-none-any"
MANYLINUX = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
MAC_ARM = "cp311-cp311-macosx_12_0_arm64"
MAC_INTEL = "cp311-cp311-macosx_10_9_x86_64"


def wheel(version, tags=PURE, *, project="demo", **meta):
    name = f"{project}-{version}-{tags}.whl"
    found = dist_file(name, f"https://files.example/{name}", index_url="https://i.example/simple", **meta)
    assert found is not None
    return found


def sdist(version, *, project="demo", **meta):
    name = f"{project}-{version}.tar.gz"
    found = dist_file(name, f"https://files.example/{name}", index_url="https://i.example/simple", **meta)
    assert found is not None
    return found


def when(day):
    return datetime(2024, 1, day, tzinfo=timezone.utc)


def versions(candidates):
    return [str(c.version) for c in candidates]


def reasons(excluded):
    return {e.version: e.reason for e in excluded}


# ----------------------------------------------------------------------- targets


def test_platform_tags_decide_fit():
    mac_wheel = Tag("cp311", "cp311", "macosx_12_0_arm64")
    linux_wheel = Tag("cp311", "cp311", "manylinux_2_17_x86_64")
    assert mac_wheel in MAC.tags and mac_wheel not in LINUX.tags
    assert linux_wheel in LINUX.tags and linux_wheel not in MAC.tags
    assert Tag("py3", "none", "any") in LINUX.tags and Tag("py3", "none", "any") in MAC.tags
    assert Tag("cp39", "abi3", "manylinux2014_x86_64") in LINUX.tags
    assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") not in LINUX.tags
    assert Tag("cp311", "cp311", "musllinux_1_1_x86_64") not in LINUX.tags
    assert Tag("cp311", "cp311", "macosx_10_9_universal2") in MAC.tags
    assert Tag("cp311", "cp311", "win_amd64") in Target.for_platform("windows-amd64", "3.11").tags
    assert Tag("cp311", "cp311", "manylinux2014_aarch64") in Target.for_platform("linux-aarch64", "3.11").tags
    assert Tag("cp311", "cp311", "macosx_10_9_x86_64") in Target.for_platform("macos-x86_64", "3.11").tags
    assert LINUX.describe() == "cp311 linux-x86_64"
    assert LINUX.python_version == Version("3.11")


def test_unknown_platform_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        Target.for_platform("amiga-m68k", "3.11")
    for name in KNOWN_PLATFORMS:
        assert name in str(err.value)


def test_host_targets():
    running = Target.host()
    assert Tag("py3", "none", "any") in running.tags
    other = Target.host("3.12")
    assert other.python_version == Version("3.12")
    assert other.tags[0].interpreter == "cp312"
    assert Tag("py3", "none", "any") in other.tags
    assert other.platform == running.platform
    with pytest.raises(ConfigError, match="3.X"):
        Target.host("python3")


# ------------------------------------------------------------------------ select


def test_ordering_is_by_version_not_text():
    files = [wheel(v) for v in ["1.10", "1.9", "1.2", "2.0", "1.10.1"]]
    candidates, excluded = select(files, target=LINUX)
    assert versions(candidates) == ["1.2", "1.9", "1.10", "1.10.1", "2.0"]
    assert excluded == []


def test_candidate_files_and_earliest_upload_time():
    files = [
        wheel("1.0", MANYLINUX, upload_time=when(5)),
        wheel("1.0", MAC_ARM, upload_time=when(3)),
        sdist("1.0", upload_time=when(4)),
    ]
    [candidate], _ = select(files, target=LINUX)
    assert candidate == Candidate(Version("1.0"), when(3), (files[0],), needs_build=False)


def test_specifier_drops_silently_and_accepts_set():
    files = [wheel(v) for v in ["0.9", "1.0", "1.5", "2.0"]]
    candidates, excluded = select(files, target=LINUX, specifier=">=1.0,<2")
    assert versions(candidates) == ["1.0", "1.5"] and excluded == []
    candidates, _ = select(files, target=LINUX, specifier=SpecifierSet("==1.*"))
    assert versions(candidates) == ["1.0", "1.5"]
    candidates, _ = select(files, target=LINUX, specifier="")
    assert len(candidates) == 4


def test_prereleases_need_pre_or_a_prerelease_specifier():
    files = [wheel(v) for v in ["1.0", "2.0rc1", "2.0.dev3", "2.0"]]
    candidates, excluded = select(files, target=LINUX)
    assert versions(candidates) == ["1.0", "2.0"]
    assert reasons(excluded) == {"2.0.dev3": Reason.PRERELEASE, "2.0rc1": Reason.PRERELEASE}
    candidates, excluded = select(files, target=LINUX, pre=True)
    assert versions(candidates) == ["1.0", "2.0.dev3", "2.0rc1", "2.0"] and excluded == []
    candidates, _ = select(files, target=LINUX, specifier=">=2.0rc1")
    assert versions(candidates) == ["2.0rc1", "2.0"]


def test_yanked_only_when_every_file_is():
    files = [
        wheel("1.0", yanked="broken metadata"),
        sdist("1.0", yanked=""),
        wheel("1.1", yanked="bad wheel"),
        sdist("1.1"),
        wheel("1.2", yanked=""),
    ]
    candidates, excluded = select(files, target=LINUX, allow_build=True)
    assert versions(candidates) == ["1.1"]
    assert candidates[0].needs_build  # the yanked wheel is not used
    by_version = {e.version: e for e in excluded}
    assert by_version["1.0"] == Excluded("1.0", Reason.YANKED, "broken metadata")
    assert by_version["1.2"].detail == "yanked without a reason"


def test_no_compatible_wheel_lists_platforms():
    files = [wheel("0.8", MAC_ARM), wheel("0.8", MAC_INTEL)]
    candidates, [excluded] = select(files, target=LINUX)
    assert candidates == []
    assert excluded.reason is Reason.NO_COMPATIBLE_WHEEL
    assert excluded.detail == "only wheels for: macos-arm64, macos-x86_64"
    assert excluded.platforms == ("macos-arm64", "macos-x86_64")
    candidates, _ = select(files, target=MAC)
    assert versions(candidates) == ["0.8"]


def test_requires_python_wheel_level_and_release_level():
    files = [
        wheel("1.0", requires_python=">=3.8"),
        wheel("2.0", requires_python=">=3.12"),
        # Release-level: the sdist states it, the wheel does not.
        wheel("3.0", MANYLINUX),
        sdist("3.0", requires_python=">=3.12"),
        # One wheel per Python: only the one that admits 3.11 is a candidate file.
        wheel("4.0", "py3-none-any", requires_python=">=3.12"),
        wheel("4.0", "py2.py3-none-any", requires_python=">=3.6"),
        wheel("5.0", requires_python="not a specifier"),
    ]
    candidates, excluded = select(files, target=LINUX)
    assert versions(candidates) == ["1.0", "4.0", "5.0"]
    assert [f.filename for f in candidates[1].files] == ["demo-4.0-py2.py3-none-any.whl"]
    assert reasons(excluded) == {"2.0": Reason.REQUIRES_PYTHON, "3.0": Reason.REQUIRES_PYTHON}
    assert {e.detail for e in excluded} == {"Requires-Python >=3.12"}


def test_wheels_for_other_pythons_on_this_platform_are_a_python_problem():
    files = [wheel("1.0", "cp312-cp312-manylinux_2_17_x86_64"), wheel("1.0", "cp313-cp313-manylinux_2_17_x86_64")]
    _, [excluded] = select(files, target=LINUX)
    assert excluded.reason is Reason.REQUIRES_PYTHON
    assert excluded.detail == "wheels only for cp312, cp313"


def test_sdist_only_and_allow_build():
    files = [sdist("1.0"), sdist("2.0", requires_python=">=3.13"), sdist("3.0"), wheel("3.0", MAC_ARM)]
    candidates, excluded = select(files, target=LINUX)
    assert candidates == []
    assert reasons(excluded) == {
        "1.0": Reason.SDIST_ONLY,
        "2.0": Reason.REQUIRES_PYTHON,
        "3.0": Reason.SDIST_ONLY,
    }
    assert excluded[2].detail == "sdist only here; wheels for: macos-arm64"
    candidates, excluded = select(files, target=LINUX, allow_build=True)
    assert versions(candidates) == ["1.0", "3.0"]
    assert all(c.needs_build for c in candidates)
    assert candidates[1].files == (files[2],)
    assert reasons(excluded) == {"2.0": Reason.REQUIRES_PYTHON}


def test_invalid_versions_are_reported_last():
    files = [wheel("1.0"), wheel("1.0.x"), sdist("2.0-beta")]
    candidates, excluded = select(files, target=LINUX, specifier=">=0.1")
    assert versions(candidates) == ["1.0"]
    assert [(e.version, e.reason) for e in excluded] == [
        ("1.0.x", Reason.INVALID_VERSION),
        ("beta", Reason.INVALID_VERSION),
    ]


def test_equal_versions_with_different_spellings_merge():
    files = [wheel("1.0", MAC_ARM), wheel("1.0.0", MANYLINUX)]
    [candidate], _ = select(files, target=LINUX)
    assert candidate.files == (files[1],)


@pytest.mark.parametrize("bad", [">=1.0 <2", "1.0", ">>2", "~=1", ">=1.0,,<2", ">=1,"])
def test_invalid_specifier(bad):
    with pytest.raises(ConfigError) as err:
        select([wheel("1.0")], target=LINUX, specifier=bad)
    assert f"invalid version range '{bad}'" in str(err.value)
    assert "'>=1.2,<2'" in str(err.value)


def test_parse_specifier():
    assert parse_specifier(None) is None
    assert parse_specifier("  ") is None
    assert parse_specifier(">=1,<2") == SpecifierSet(">=1,<2")


# ------------------------------------------------------------------ descriptions


def test_platforms_with_wheels():
    files = [
        wheel("1.0", "cp311-cp311-macosx_10_9_universal2"),
        wheel("1.0", "cp311-cp311-win_amd64"),
        wheel("1.0", MANYLINUX),
        wheel("1.0", "cp311-cp311-musllinux_1_1_aarch64"),
        wheel("1.0", PURE),
        sdist("1.0"),
    ]
    assert platforms_with_wheels(files) == [
        "any",
        "linux-x86_64",
        "macos-arm64",
        "macos-x86_64",
        "musllinux-aarch64",
        "windows-amd64",
    ]
    assert platforms_with_wheels([sdist("1.0")]) == []


def test_why_empty_for_a_mac_only_package():
    files = [wheel(f"0.{minor}", MAC_ARM, project="tensorflow_metal") for minor in range(8, 20)]
    files += [wheel("0.9", MAC_INTEL, project="tensorflow_metal")]
    candidates, excluded = select(files, target=LINUX, specifier=">=0.8")
    assert candidates == []
    line = why_empty(excluded, LINUX, ">=0.8", package="tensorflow-metal")
    assert line.startswith("no release of tensorflow-metal in '>=0.8' installs on cp311 linux-x86_64: ")
    assert "12 have no wheel for this platform (wheels exist for macos-arm64, macos-x86_64)" in line
    assert "run on a Mac" in line and "bisect a package that has wheels here" in line
    assert "\n" not in line


def test_why_empty_mixed_reasons_and_nothing_at_all():
    files = [wheel("1.0rc1"), wheel("2.0", yanked="oops"), sdist("3.0"), wheel("4.0", requires_python=">=3.13")]
    _, excluded = select(files, target=LINUX)
    line = why_empty(excluded, LINUX, None)
    assert line.startswith("no release installs on cp311 linux-x86_64: ")
    for part in ["1 is a pre-release", "1 is yanked", "1 is source only", "1 needs a different Python"]:
        assert part in line
    # Two hints at most; on a tie the actionable flags win over "widen the range".
    assert line.endswith("; pass --pre to include pre-releases or pass --allow-build to build from source")
    empty = why_empty([], LINUX, SpecifierSet(">=9"), package="demo")
    assert empty == "no release of demo in '>=9' was found on the index; widen the range or check --index-url"
