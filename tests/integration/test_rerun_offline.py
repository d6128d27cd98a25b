"""``bisect show RUN --rerun SEQ``: a finished nightly run stays checkable after the
channel pruned its builds — here the whole index is gone (server stopped).

First from the environment the cache kept, then, with that environment evicted, from an
environment uv rebuilds ``--offline`` out of its own cache. Real CLI, real uv.
"""

from __future__ import annotations

import shutil
from datetime import date

from support.cli import bisect_cli, write_recipe
from support.nightly_channel import FIRST_BAD, TORCHLIKE_BODY, build_torch_channel, nightly_version


def test_rerun_a_stored_probe_offline_after_the_channel_is_gone(tmp_path, local_index):
    nightly = local_index(flavour="html")
    build_torch_channel(tmp_path, nightly, variants=("cpu",))
    recipe = write_recipe(tmp_path / "r.py", TORCHLIKE_BODY, package="torchlike", deps=("torchlike",))
    cache = tmp_path / "cache"
    run = bisect_cli("run", str(recipe), "--index-url", nightly.url, "--variant", "cpu",
                     "--range", ">=1.2.0.dev20260311,<=1.2.0.dev20260317", "--cache-dir", str(cache), "--json",
                     cwd=tmp_path, check_json=True)
    assert run.returncode == 0, run.stderr
    first_bad = nightly_version(FIRST_BAD["cpu"], "cpu")
    assert run.json["first_bad"] == first_bad
    shown = bisect_cli("show", str(run.json["run_id"]), "--cache-dir", str(cache), "--json", cwd=tmp_path,
                       check_json=True)
    rows = {r["version"]: r for r in shown.json["probe_rows"]}
    bad_row, good_row = rows[first_bad], rows[nightly_version(date(2026, 3, 13), "cpu")]
    nightly.stop()  # the channel is gone: nothing can be downloaded any more

    def rerun(row, expect_exit):
        proc = bisect_cli("show", str(run.json["run_id"]), "--rerun", str(row["seq"]), "--cache-dir", str(cache),
                          "--json", cwd=tmp_path, check_json=True)
        assert proc.returncode == expect_exit, proc.stdout + proc.stderr
        assert proc.json["rerun_of"] == {"run": run.json["run_id"], "seq": row["seq"], "version": row["version"]}
        assert proc.json["outcome"] == row["outcome"] == proc.json["original_outcome"]
        assert proc.json["resolved"]["torchlike"] == row["version"]
        return proc.json

    kept = rerun(bad_row, 1)
    assert kept["environment"] == "kept environment" and kept["env_key"] == bad_row["env_key"]
    shutil.rmtree(cache / "envs" / good_row["env_key"])
    rebuilt = rerun(good_row, 0)
    assert rebuilt["environment"] == "rebuilt offline from the uv cache"
    assert (cache / "envs" / rebuilt["env_key"]).is_dir()

    text = bisect_cli("show", str(run.json["run_id"]), "--rerun", str(bad_row["seq"]), "--cache-dir", str(cache),
                      cwd=tmp_path)
    assert "nightly 2026-03-14" in text.stdout and "was bad" in text.stdout
    history = bisect_cli("history", "--cache-dir", str(cache), "--json", cwd=tmp_path, check_json=True)
    reruns = [r for r in history.json if (r.get("settings") or {}).get("rerun_of")]
    assert len(reruns) == 3 and all(r["kind"] == "check" for r in reruns)

    missing = bisect_cli("show", str(run.json["run_id"]), "--rerun", "99", "--cache-dir", str(cache), cwd=tmp_path)
    assert missing.returncode == 2 and "no probe #99" in missing.stderr
