"""Nightly channels end to end: real CLI / library, real uv installs, local indexes.

The PyTorch-style channel (tests/support/nightly_channel.py) serves ``torchlike``
nightlies in two variants with a pinned companion on one HTML index, with a night
missing; the regression lands on 2026-03-14 for ``cpu`` and 2026-03-05 for ``cu126``.
The tf-nightly-style channel is ``tfsim-nightly`` on a JSON index. Nothing is mocked.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import pytest

from support.cli import bisect_cli, write_recipe
from support.nightly_channel import (
    FIRST_BAD,
    MISSING_NIGHT,
    TFSIM_BODY,
    TORCHLIKE_BODY,
    build_tfsim,
    build_torch_channel,
    nightly_version,
)

from envbisect.config import CachePaths, Settings
from envbisect.index import IndexConfig
from envbisect.nightly import ChannelConfig
from envbisect.nightly_runs import run_nightlies
from envbisect.requests_model import BisectRequest
from envbisect.session import Session, SilentHandler
from envbisect.recipes import load_recipe
from envbisect.store import Store


def _night(version: str) -> str:
    return version.split(".dev")[1][:8]


@pytest.fixture
def torch_recipe(tmp_path):
    return write_recipe(tmp_path / "torchlike_recipe.py", TORCHLIKE_BODY, package="torchlike",
                        deps=("torchlike",))


def test_release_then_nightly_two_phases(tmp_path, local_index, torch_recipe):
    """Releases first (1.1 good, 1.2 bad), then the cpu nightlies built between them."""
    nightly, releases = local_index(flavour="html"), local_index(flavour="json")
    build_torch_channel(tmp_path, nightly, releases)
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(torch_recipe), "--index-url", releases.url, "--cache-dir", str(cache),
                      "--nightlies", "--nightly-index", nightly.url, "--json", cwd=tmp_path, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert (res["last_good"], res["first_bad"]) == ("1.1", "1.2")
    phase = res["nightly_phase"]
    assert phase["status"] == "found", phase
    assert phase["first_bad"] == nightly_version(FIRST_BAD["cpu"], "cpu")
    assert phase["last_good"] == nightly_version(date(2026, 3, 13), "cpu")
    assert phase["nightly"]["variant"] == "cpu" and "no CUDA" in phase["nightly"]["variant_source"]
    assert phase["nightly"]["window"] == "2026-03-01 .. 2026-03-20"
    assert MISSING_NIGHT.isoformat() in phase["nightly"]["missing_nights"]
    probed = [p["version"] for p in phase["probes"]]
    assert probed and all(v.endswith("+cpu") for v in probed), "variants must never be mixed"
    assert all("20260301" <= _night(v) <= "20260320" for v in probed), "only nightlies inside the window"
    excluded = {e["version"]: e["reason"] for e in phase["excluded"]}
    assert "variant" in excluded[nightly_version(FIRST_BAD["cpu"], "cu126")]
    for p in phase["probes"]:  # the pinned companion came from the nightly channel
        assert p["resolved"]["companion"] == "1.0.0+git1", p
    assert phase["release_run"] == res["run_id"] != phase["run_id"]

    text = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(cache), cwd=tmp_path)
    assert "first bad release of torchlike: 1.2" in text.stdout
    assert "nightly phase (run" in text.stdout and "nightly 2026-03-14" in text.stdout
    shown = bisect_cli("show", str(phase["run_id"]), "--cache-dir", str(cache), cwd=tmp_path)
    assert "nightly 2026-03-14" in shown.stdout


def test_variant_flag_picks_the_other_variant(tmp_path, local_index, torch_recipe):
    nightly = local_index(flavour="html")
    build_torch_channel(tmp_path, nightly)
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(torch_recipe), "--index-url", nightly.url, "--variant", "cu126",
                      "--range", ">=1.2.0.dev20260301,<1.2.0.dev20260309", "--cache-dir", str(cache), "--json",
                      cwd=tmp_path, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert res["first_bad"] == nightly_version(FIRST_BAD["cu126"], "cu126")
    assert {p["version"].rpartition("+")[2] for p in res["probes"]} == {"cu126"}
    wrong = bisect_cli("run", str(torch_recipe), "--index-url", nightly.url, "--variant", "rocm6",
                       "--cache-dir", str(cache), cwd=tmp_path)
    assert wrong.returncode == 2 and "available: cpu, cu126" in wrong.stderr


def test_build_pruned_between_listing_and_install_is_routed_around(tmp_path, local_index, torch_recipe):
    """The first bad night vanishes after the listing: it is untestable as 'pruned', and
    the answer is the honest range around it."""
    nightly = local_index(flavour="html")
    channel = build_torch_channel(tmp_path, nightly, variants=("cpu",))
    doomed = nightly_version(FIRST_BAD["cpu"], "cpu")

    class PruneAfterListing(SilentHandler):
        def note(self, message: str) -> None:  # called once the candidates are arranged
            channel.prune_file(doomed)

    settings = Settings(cache=CachePaths(tmp_path / "cache").ensure(), index=IndexConfig(nightly.url))
    req = BisectRequest(recipe=load_recipe(torch_recipe), package="torchlike", spec=">=1.2.0.dev20260301,<1.2.0.dev20260320")
    with Store(settings.cache.db) as store:
        result = run_nightlies(Session(settings, store, PruneAfterListing()), req, ChannelConfig(variant="cpu"))
    assert result["status"] == "inconclusive", result
    assert result["last_good"] == nightly_version(date(2026, 3, 13), "cpu")
    assert result["first_bad"] == nightly_version(date(2026, 3, 15), "cpu")
    assert result["untestable_between"] == [doomed]
    reasons = {u["version"]: u["reason"] for u in result["untestable"]}
    assert "build pruned from the index" in reasons[doomed]


def test_tf_nightly_style_json_index_orders_by_build_date(tmp_path, local_index):
    index = local_index(flavour="json")
    build_tfsim(tmp_path, index, with_releases=False)
    recipe = write_recipe(tmp_path / "tfsim_recipe.py", TFSIM_BODY, package="tfsim-nightly", deps=("tfsim-nightly",))
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(recipe), "--pre", "--index-url", index.url, "--cache-dir", str(cache), "--json",
                      cwd=tmp_path, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    assert (res["last_good"], res["first_bad"]) == ("2.1.0.dev20260313", "2.1.0.dev20260314")
    assert res["nightly"]["variant"] is None and res["nightly"]["missing_nights"] == ["2026-03-10"]
    excluded = {e["version"]: e["reason"] for e in res["excluded"]}
    assert "older build of the same night" in excluded["2.1.0.dev20260305"]
    assert res["candidates"] == 19  # 20 nights, one missing, one night's two builds counted once
    text = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(cache), cwd=tmp_path).stdout
    assert "first bad nightly of tfsim-nightly: nightly 2026-03-14 (2.1.0.dev20260314)" in text
    versions = bisect_cli("versions", "tfsim-nightly", "--pre", "--index-url", index.url, "--json",
                          "--cache-dir", str(cache), cwd=tmp_path, check_json=True)
    # `versions` lists the nightlies as `run` sees them: one build per night.
    assert len(versions.json["candidates"]) == 19
    assert "2.1.0.dev20260305" in {e["version"] for e in versions.json["excluded"]}


def test_tf_nightly_style_release_then_nightly_package(tmp_path, local_index):
    """tensorflow -> tf-nightly: the nightly phase installs the other package in place of
    the bisected one."""
    index = local_index(flavour="json")
    build_tfsim(tmp_path, index)
    recipe = write_recipe(tmp_path / "tfsim_recipe.py", TFSIM_BODY, package="tfsim", deps=("tfsim",),
                          extra_tool='nightly-package = "tfsim-nightly"')
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(recipe), "--nightlies", "--index-url", index.url, "--cache-dir", str(cache),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "first bad release of tfsim: 2.1 (last good: 2.0)"
    assert "first bad nightly of tfsim-nightly: nightly 2026-03-14 (2.1.0.dev20260314)" in proc.stdout
    con = sqlite3.connect(cache / "results.db")
    try:
        rows = con.execute("select package, resolved from probes where package = 'tfsim-nightly'").fetchall()
    finally:
        con.close()
    assert rows and all("tfsim-nightly" in json.loads(r) and "tfsim" not in json.loads(r) for _, r in rows)


def test_nightlies_without_a_channel_is_a_usage_error(tmp_path, planted_index):
    recipe = write_recipe(tmp_path / "r.py", "import sys\nsys.exit(0)\n")
    proc = bisect_cli("run", str(recipe), "--nightlies", "--index-url", planted_index.url,
                      "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 2 and "--nightly-index" in proc.stderr and "nightly-package" in proc.stderr


@pytest.mark.network
def test_real_tf_nightly_candidates_parse_as_nightly_dates(tmp_path):
    from envbisect.index import IndexClient
    from envbisect.nightly import arrange, build_date
    from envbisect.versions import Target, select

    with IndexClient(IndexConfig(), cache_dir=tmp_path / "index") as client:
        files = client.project_files("tf-nightly")
    cands, excluded = select(files, target=Target.host(), pre=True)
    recent = [c for c in cands if c.upload_time and c.upload_time.year >= 2024][-5:]
    assert recent, "expected recent tf-nightly builds for this host"
    assert all(build_date(c.version) is not None for c in recent)
    nightlies, _, channel = arrange(recent, [], package="tf-nightly")
    assert channel is not None and channel.variant is None
    assert [build_date(c.version) for c in nightlies] == sorted(build_date(c.version) for c in nightlies)


def test_versions_lists_one_build_per_night_of_one_variant(tmp_path, local_index):
    nightly = local_index(flavour="html")
    build_torch_channel(tmp_path, nightly)
    proc = bisect_cli("versions", "torchlike", "--index-url", nightly.url, "--pre", "--variant", "cu126",
                      "--cache-dir", str(tmp_path / "cache"), "--json", cwd=tmp_path, check_json=True)
    assert proc.returncode == 0, proc.stderr
    res = proc.json
    versions = [c["version"] for c in res["candidates"]]
    assert versions and all(v.endswith("+cu126") for v in versions)
    assert len({v.split(".dev")[1][:8] for v in versions}) == len(versions), "one build per night"
    assert res["channel"]["variant"] == "cu126"
    assert any(e["reason"].startswith("other variant") or "variant" in e["detail"] for e in res["excluded"])
    text = bisect_cli("versions", "torchlike", "--index-url", nightly.url, "--pre",
                      "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert text.returncode == 0 and "nightly 2026-03-0" in text.stdout and "variant cpu" in text.stdout
