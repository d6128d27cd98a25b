"""A real bisection against the real public index (network: deselect with -m 'not network').

The README's first command, as a test: the demo recipe finds the ``packaging`` release
that removed ``LegacyVersion``, and names its upstream compare link.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import bisect_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.network
def test_real_bisection_of_packaging_on_the_public_index(tmp_path):
    proc = bisect_cli("run", str(REPO / "recipes" / "packaging_legacy_version.py"), "--cache-dir",
                      str(tmp_path / "cache"), "--json", cwd=tmp_path, timeout=600, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert res["status"] == "found"
    assert (res["last_good"], res["first_bad"]) == ("21.3", "22.0")
    bad = next(p for p in res["probes"] if p["version"] == "22.0")
    assert bad["metrics"]["error"].startswith("InvalidVersion")
    # The README's upstream line: packaging's metadata names the repository, its tags are
    # unprefixed (21.3, 22.0), so the two-component guess is right even without a token.
    rng = res["source_range"]
    assert rng["repository"] == "https://github.com/pypa/packaging"
    assert rng["url"] == "https://github.com/pypa/packaging/compare/21.3...22.0"
