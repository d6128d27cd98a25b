"""Target platforms: ``bisect versions --platform`` plans a bisection for another OS from
wheel tags, and a run on a host without candidates says which platforms have them.

The local index serves tiny wheels under real tensorflow-metal file names (macOS only,
as published); one test asks the real public index (marked ``network``).
"""

from __future__ import annotations

import pytest

from support.cli import bisect_cli, write_recipe
from support.wheels import build_wheel

#: Real tensorflow-metal wheel filename sets: (version, [(python tag, platform tag)]).
METAL_WHEELS = {
    "0.8.0": [(f"cp3{m}", p) for m in (8, 9, 10, 11) for p in ("macosx_12_0_arm64", "macosx_12_0_x86_64")],
    "1.0.1": [(f"cp3{m}", "macosx_12_0_arm64") for m in (8, 9, 10, 11)],
    "1.1.0": [(f"cp3{m}", "macosx_12_0_arm64") for m in (9, 10, 11)],
    "1.2.0": [(f"cp3{m}", "macosx_12_0_arm64") for m in (9, 10, 11, 12)],
}


@pytest.fixture
def metal_index(local_index, wheel_dir):
    index = local_index()
    for version, tags in METAL_WHEELS.items():
        for py, plat in tags:
            index.add(build_wheel(wheel_dir, "tensorflow-metal", version, tag=f"{py}-{py}-{plat}"))
    return index


def _versions(tmp_path, index_url, *args):
    return bisect_cli("versions", "tensorflow-metal", "--index-url", index_url, "--cache-dir", str(tmp_path / "c"),
                      "--json", *args, cwd=tmp_path, check_json=True)


@pytest.mark.parametrize("platform, python, expected", [
    ("macos-arm64", "3.11", ["0.8.0", "1.0.1", "1.1.0", "1.2.0"]),
    ("macos-x86_64", "3.11", ["0.8.0"]),
    ("macos-arm64", "3.12", ["1.2.0"]),
    ("linux-x86_64", "3.11", []),
    ("windows-amd64", "3.11", []),
])
def test_versions_for_a_named_platform_follow_the_wheel_tags(tmp_path, metal_index, platform, python, expected):
    proc = _versions(tmp_path, metal_index.url, "--platform", platform, "--python", python)
    assert proc.returncode == 0, proc.stderr
    assert [c["version"] for c in proc.json["candidates"]] == expected
    assert proc.json["platform"] == platform
    if not expected:
        assert "macos-arm64" in proc.json["why_empty"] and "run on a Mac" in proc.json["why_empty"]
        assert all("macos-arm64" in e["platforms"] for e in proc.json["excluded"])


def test_unknown_platform_is_refused_with_the_choices(tmp_path, metal_index):
    proc = bisect_cli("versions", "tensorflow-metal", "--platform", "amiga-68k", "--index-url", metal_index.url,
                      "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert proc.returncode == 2 and "macos-arm64" in proc.stderr and "linux-aarch64" in proc.stderr


def test_run_on_a_host_without_candidates_names_the_platforms_that_have_them(tmp_path, metal_index):
    recipe = write_recipe(tmp_path / "metal.py", "import sys\nsys.exit(0)\n", package="tensorflow-metal",
                          deps=("tensorflow-metal",))
    proc = bisect_cli("run", str(recipe), "--index-url", metal_index.url, "--cache-dir", str(tmp_path / "c"),
                      cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "no release of tensorflow-metal installs on" in proc.stderr
    assert "wheels exist for macos-arm64, macos-x86_64" in proc.stderr and "run on a Mac" in proc.stderr
    # The text listing says the same for this (Linux) host.
    text = bisect_cli("versions", "tensorflow-metal", "--index-url", metal_index.url, "--cache-dir",
                      str(tmp_path / "c"), cwd=tmp_path)
    assert "0 candidates" in text.stdout and "wheels exist for macos-arm64" in text.stdout


@pytest.mark.network
def test_tensorflow_metal_on_the_real_index_is_macos_only(tmp_path):
    from envbisect.index import DEFAULT_INDEX_URL

    linux = _versions(tmp_path, DEFAULT_INDEX_URL, "--platform", "linux-x86_64", "--python", "3.11")
    assert linux.returncode == 0, linux.stderr
    assert linux.json["candidates"] == []
    assert "macos-arm64" in linux.json["why_empty"]
    mac = _versions(tmp_path, DEFAULT_INDEX_URL, "--platform", "macos-arm64", "--python", "3.11")
    assert mac.returncode == 0, mac.stderr
    versions = [c["version"] for c in mac.json["candidates"]]
    assert versions and {"1.0.0", "1.1.0"} <= set(versions)
