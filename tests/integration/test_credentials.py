"""Private mirrors: an index behind HTTP basic auth, credentials in the URL.

The credentials must reach both readers of the index (requests for listings and HEAD
checks, uv for installs) and must never be written anywhere: every byte under the cache
directory (results.db and its WAL, logs, envs with their marker files, index cache,
uv's cache) and every line the CLI prints are searched for the password.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console

from support.cli import bisect_cli, write_recipe
from support.nightly_channel import FIRST_BAD, TORCHLIKE_BODY, build_torch_channel, nightly_version

from envbisect.config import CachePaths, Settings
from envbisect.index import IndexClient, IndexConfig
from envbisect.nightly import ChannelConfig
from envbisect.nightly_runs import run_nightlies
from envbisect.progress import Progress
from envbisect.recipes import load_recipe
from envbisect.requests_model import BisectRequest
from envbisect.session import Session
from envbisect.store import Store

USER, PASSWORD = "alice", "pw-S3cr3t-8f2b"


def _leaks(root: Path) -> list[str]:
    """Files under ``root`` whose bytes contain the password or the user:password pair."""
    needles = (PASSWORD.encode(), f"{USER}:".encode() + PASSWORD[:4].encode())
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


@pytest.fixture
def channel(tmp_path, local_index):
    nightly, releases = local_index(flavour="html", auth=(USER, PASSWORD)), local_index(flavour="json")
    return build_torch_channel(tmp_path, nightly, releases, variants=("cpu",))


def test_credentials_work_and_never_leak(tmp_path, channel):
    nightly = channel.nightly
    recipe = write_recipe(tmp_path / "r.py", TORCHLIKE_BODY, package="torchlike", deps=("torchlike",))
    cache = tmp_path / "cache"
    # The newest night in the window is listed but its file is gone: the HEAD that tells
    # "pruned" from other install failures needs the credentials too.
    channel.prune_file(nightly_version(date(2026, 3, 20), "cpu"))
    outputs = []
    run = bisect_cli("run", str(recipe), "--index-url", channel.releases.url, "--nightlies",
                     "--nightly-index", nightly.auth_url, "--json", "--cache-dir", str(cache), cwd=tmp_path,
                     check_json=True)
    outputs += [run.stdout, run.stderr]
    assert run.returncode == 0, run.stderr
    phase = run.json["nightly_phase"]
    assert phase["first_bad"] == nightly_version(FIRST_BAD["cpu"], "cpu"), phase
    assert any("build pruned from the index" in u["reason"] for u in phase["untestable"]), phase["untestable"]
    assert "***@127.0.0.1" in " ".join(phase["reproduce"])
    rows = bisect_cli("show", str(phase["run_id"]), "--json", "--cache-dir", str(cache), cwd=tmp_path,
                      check_json=True)
    outputs += [rows.stdout, rows.stderr]
    ran = next(r["seq"] for r in rows.json["probe_rows"] if r["version"] == phase["first_bad"])
    for args in (("report", str(run.json["run_id"])), ("report", str(phase["run_id"]), "--format", "json"),
                 ("show", str(phase["run_id"])), ("history", "--json"), ("show", str(phase["run_id"]), "--rerun", str(ran)),
                 ("run", str(recipe), "--index-url", channel.releases.url, "--nightlies", "--nightly-index",
                  nightly.auth_url)):  # the second run reuses every probe and prints text
        proc = bisect_cli(*args, "--cache-dir", str(cache), cwd=tmp_path)
        assert proc.returncode in (0, 1), proc.stderr
        outputs += [proc.stdout, proc.stderr]
    wrong = nightly.auth_url.replace(PASSWORD, "not-the-" + PASSWORD[::-1])
    refused = bisect_cli("run", str(recipe), "--index-url", wrong, "--variant", "cpu", "--cache-dir", str(cache),
                         cwd=tmp_path)
    assert refused.returncode == 6 and "refused access (HTTP 401)" in refused.stderr
    assert PASSWORD[::-1] not in refused.stderr + refused.stdout
    outputs += [refused.stdout, refused.stderr]

    assert (cache / "results.db").is_file() and any((cache / "logs").rglob("*.log"))
    assert any((cache / "envs").glob("*/envbisect-env.json")) and any((cache / "index").iterdir())
    assert _leaks(cache) == []
    assert not [o for o in outputs if PASSWORD in o]


def test_progress_output_and_head_checks_with_credentials(tmp_path, channel):
    nightly = channel.nightly
    listed = nightly_version(FIRST_BAD["cpu"], "cpu")
    file_url = f"{nightly.base}/files/{channel.filename(listed)}".replace("+", "%2B")
    with IndexClient(IndexConfig(nightly.auth_url)) as client:
        assert client.file_exists(file_url) is True
        channel.prune_file(listed)
        assert client.file_exists(file_url) is False
    with IndexClient(IndexConfig(nightly.url)) as client:  # no credentials: cannot tell
        assert client.file_exists(file_url) is None

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    settings = Settings(cache=CachePaths(tmp_path / "cache").ensure(), index=IndexConfig(nightly.auth_url))
    req = BisectRequest(recipe=load_recipe(write_recipe(tmp_path / "r.py", TORCHLIKE_BODY, package="torchlike",
                                                        deps=("torchlike",))),
                        package="torchlike", spec=">=1.2.0.dev20260312,<=1.2.0.dev20260316")
    with Store(settings.cache.db) as store, Progress(console, enabled=True) as progress:
        result = run_nightlies(Session(settings, store, progress), req, ChannelConfig(variant="cpu"))
    text = buffer.getvalue()
    assert "nightly 2026-03-1" in text and "build pruned from the index" in text
    assert result["untestable_between"] == [listed]
    assert PASSWORD not in text and _leaks(tmp_path / "cache") == []
