"""``bisect run`` end to end: real CLI subprocess, real uv installs, real local index.

The planted index (tests/conftest.py) serves ``planted`` 0.9 (sdist only), 1.0–1.9 (1.3
yanked, 1.7 with a Windows-only wheel), 2.0 and 2.1rc1; releases from 1.6 on carry the
regression. Nothing is mocked.
"""

from __future__ import annotations

import math
import sqlite3

import pytest

from support.cli import PLANTED_BODY, bisect_cli, write_recipe


@pytest.fixture
def recipe(tmp_path):
    return write_recipe(tmp_path / "planted_recipe.py", PLANTED_BODY)


def _probe_rows(cache):
    con = sqlite3.connect(cache / "results.db")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("select * from probes order by id")]
    finally:
        con.close()


def test_run_finds_planted_regression_and_reuses_probes(tmp_path, planted_index, recipe):
    cache = tmp_path / "cache"
    args = ("run", str(recipe), "--index-url", planted_index.url, "--cache-dir", str(cache), "--json")
    first = bisect_cli(*args, cwd=tmp_path, check_json=True)
    assert first.returncode == 0, first.stderr
    res = first.json
    assert res["status"] == "found"
    assert (res["last_good"], res["first_bad"]) == ("1.5", "1.6")
    n = len(planted_index.installable)
    assert res["candidates"] == n
    assert len(res["probes"]) <= math.ceil(math.log2(n)) + 2
    assert res["executed"] == len(res["probes"])
    probed = {p["version"] for p in res["probes"]}
    assert not probed & {"0.9", "1.3", "1.7", "2.1rc1"}, "left-out releases must never be probed"
    excluded = {e["version"]: e["reason"] for e in res["excluded"]}
    assert "yanked" in excluded["1.3"] and "wheel" in excluded["1.7"] and "source" in excluded["0.9"]
    assert "pre-release" in excluded["2.1rc1"]
    envs_before = sorted(p.name for p in (cache / "envs").iterdir() if not p.name.startswith("."))

    again = bisect_cli(*args, cwd=tmp_path, check_json=True)
    assert again.returncode == 0
    assert again.json["executed"] == 0, "a rerun must reuse every recorded probe"
    assert again.json["first_bad"] == "1.6"
    assert all(p["reused"] for p in again.json["probes"])

    fresh = bisect_cli(*args, "--no-reuse", cwd=tmp_path, check_json=True)
    assert fresh.json["executed"] == len(fresh.json["probes"]) > 0
    rows = _probe_rows(cache)
    used = {r["env_key"] for r in rows if r["run_id"] == fresh.json["run_id"]}
    # (Builds ahead may add envs of candidates never probed; the probes themselves reuse.)
    assert used <= set(envs_before), "--no-reuse re-runs recipes but reuses the cached envs"

    assert {r["run_id"] for r in rows} == {first.json["run_id"], again.json["run_id"], fresh.json["run_id"]}
    assert all(r["resolved"] and "planted" in r["resolved"] for r in rows)


def test_html_only_index_and_pre_releases(tmp_path, planted_index_factory, recipe):
    index = planted_index_factory(flavour="html")
    cache = tmp_path / "cache"
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(cache), "--json",
                      "--pre", "--good", "1.8", cwd=tmp_path, check_json=True)
    # 1.8 is bad, so --good 1.8 is contradicted by the probe: the oldest end is already bad.
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert proc.json["status"] == "predates-range"
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(cache), "--json",
                      "--pre", "--range", ">=1.8", "--find-fix", cwd=tmp_path, check_json=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # never fixed: newest (2.1rc1) still bad
    assert proc.json["status"] == "not-reproduced"
    assert "2.1rc1" in {p["version"] for p in proc.json["probes"]}


def test_text_output_and_reports(tmp_path, planted_index, recipe):
    cache = tmp_path / "cache"
    proc = bisect_cli("run", recipe.name, "--index-url", planted_index.url, "--cache-dir", str(cache),
                      cwd=tmp_path)  # a relative recipe path, as a user types it
    assert proc.returncode == 0, proc.stderr
    assert "first bad release of planted: 1.6 (last good: 1.5)" in proc.stdout
    assert "reproduce: bisect run" in proc.stdout
    hist = bisect_cli("history", "--cache-dir", str(cache), cwd=tmp_path)
    assert hist.returncode == 0 and "planted" in hist.stdout
    show = bisect_cli("show", "1", "--cache-dir", str(cache), cwd=tmp_path)
    assert show.returncode == 0 and "1.6" in show.stdout and "bad" in show.stdout
    md = tmp_path / "report.md"
    rep = bisect_cli("report", "1", "--format", "md", "-o", str(md), "--cache-dir", str(cache), cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    text = md.read_text()
    assert "last good **1.5**" in text and "first bad **1.6**" in text
    assert "Reproduce with:" in text and "--with planted==1.6 planted_recipe.py" in text
    assert "| planted | 1.5 | 1.6 |" in text  # the env diff across the boundary
    assert "| version | outcome |" in text
    assert f"`{recipe.name}`" in text and str(tmp_path) not in text, "no local absolute paths in a public report"
    js = bisect_cli("report", "1", "--format", "json", "--cache-dir", str(cache), cwd=tmp_path)
    assert js.returncode == 0 and '"first_bad": "1.6"' in js.stdout
    missing = bisect_cli("show", "99", "--cache-dir", str(cache), cwd=tmp_path)
    assert missing.returncode == 2 and "no run 99" in missing.stderr
