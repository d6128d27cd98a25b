"""The upstream change range of a finding, end to end: real wheels with metadata, a real
loopback index, real uv installs, the real CLI, and the loopback GitHub server for tags.

One bisection of ``upa`` (1.0.0 good, 1.1.0 bad) covers the three kinds of range at once:
each release of ``upa`` pins its own release of ``upb`` and ``upc``, so all three move.

* ``upa`` names its repository (``Project-URL: Source``) and records its revision (1.0.0 in
  a torch-style ``upa/version.py``: ``git_version = '...'``; 1.1.0 as ``__git_version__``):
  a commit-to-commit link.
* ``upb`` names its repository (``Home-page``) and a changelog but no revision: a
  tag-to-tag link, unconfirmed without a token; with one, both tags are looked up on the
  loopback GitHub server (found in the other tag style / one missing).
* ``upc`` has no metadata at all: no link, and the range says why. Importing it exits,
  so ``upa``'s link also shows that the source probe imports nothing.

Reruns reuse the two probes (their ``source`` records come along), so the token cases
cost a CLI start each.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from envbisect import sourcescan
from envbisect.report import text_summary
from envbisect.runner import scrubbed_environ
from envbisect.sourceprobe import read_sources

from support.cli import bisect_cli, cli_env, write_recipe
from support.github_server import FakeGitHub
from support.index_server import LocalIndex
from support.wheels import build_wheel

OLD_SHA, NEW_SHA = "1111111aaaaaaa" + "0" * 26, "2222222bbbbbbb" + "0" * 26
TOKEN = "tok-source-range"


@pytest.fixture(scope="module")
def upstream_index(tmp_path_factory):
    dest = tmp_path_factory.mktemp("upstream-dists")
    index = LocalIndex(tmp_path_factory.mktemp("upstream-index")).start()
    a_files = {
        "1.0.0": {"upa/__init__.py": "VALUE = 1\n",
                  "upa/version.py": "__all__ = ['__version__', 'git_version']\n__version__ = '1.0.0'\n"
                                    f"git_version = '{OLD_SHA}'\n"},
        "1.1.0": {"upa/__init__.py": f"VALUE = 2\n__git_version__ = \"{NEW_SHA}\"\n"},
    }
    for version, files in a_files.items():
        index.add(build_wheel(dest, "upa", version, files=files,
                              requires_dist=[f"upb=={version}", f"upc=={version}"],
                              extra_metadata=["Project-URL: Documentation, https://upa.example/docs",
                                              "Project-URL: Source, https://github.com/octo/upa"]))
        index.add(build_wheel(dest, "upb", version, extra_metadata=[
            "Home-page: https://github.com/octo/upb",
            "Project-URL: Funding, https://github.com/sponsors/octo",
            "Project-URL: Changelog, https://upb.example/changes"]))
        # Importing upc fails: the source probe reads files and never imports a package.
        index.add(build_wheel(dest, "upc", version, files={"upc/__init__.py": "raise SystemExit('imported')\n"}))
    yield index
    index.stop()


@pytest.fixture(scope="module")
def hub():
    server = FakeGitHub(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bisected(tmp_path_factory, upstream_index):
    """The first run (records both probes); returns (workdir, cache, recipe, its JSON)."""
    work = tmp_path_factory.mktemp("upstream-run")
    recipe = write_recipe(work / "upa_recipe.py", "import sys, upa\nsys.exit(0 if upa.VALUE == 1 else 1)\n",
                          package="upa", deps=("upa",))
    proc = _run(work, work / "cache", recipe, upstream_index)
    return work, work / "cache", recipe, proc.json


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in cli_env(**extra).items() if k in extra or not k.startswith("GITHUB_")}
    return env


def _run(work, cache, recipe, index, *args, env=None):
    proc = bisect_cli("run", str(recipe), "--index-url", index.url, "--cache-dir", str(cache), "--json", *args,
                      cwd=work, env=env or _env(), check_json=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_commit_range_tag_range_and_no_metadata(bisected):
    work, cache, _, res = bisected
    assert (res["last_good"], res["first_bad"]) == ("1.0.0", "1.1.0")
    ranges = {r["package"]: r for r in res["source_ranges"]}
    assert list(ranges) == ["upa", "upb", "upc"], "the bisected package first, then every package that moved"
    assert res["source_range"] == ranges["upa"]
    a = ranges["upa"]
    assert (a["kind"], a["repository"], a["from"], a["to"]) == ("commits", "https://github.com/octo/upa",
                                                                OLD_SHA, NEW_SHA)
    assert a["url"] == f"https://github.com/octo/upa/compare/{OLD_SHA}...{NEW_SHA}"
    b = ranges["upb"]
    assert (b["kind"], b["confirmed"]) == ("tags", False)
    assert b["url"] == "https://github.com/octo/upb/compare/v1.0.0...v1.1.0"  # 3 components: v-style guessed
    assert b["changelog"] == "https://upb.example/changes"
    c = ranges["upc"]
    assert c["url"] is None and c["repository"] is None
    assert "upc's metadata names no GitHub repository" in c["reason"]

    summary = text_summary(res)  # what `bisect run` prints without --json
    assert f"  upstream upa: https://github.com/octo/upa/compare/{OLD_SHA}...{NEW_SHA} (commits the builds record)" \
        in summary
    assert "  changelog upb: https://upb.example/changes" in summary

    text = bisect_cli("report", str(res["run_id"]), "--cache-dir", str(cache), cwd=work, env=_env())
    assert text.returncode == 0, text.stderr
    assert "#### Upstream changes" in text.stdout
    assert f"- **upa:** https://github.com/octo/upa/compare/{OLD_SHA}...{NEW_SHA} (commits the builds record)" \
        in text.stdout
    assert "- **upb:** https://github.com/octo/upb/compare/v1.0.0...v1.1.0 (release tags, unconfirmed)" in text.stdout
    assert "- **upc:** unknown (no upstream link: upc's metadata names no GitHub repository)" in text.stdout


def test_a_token_confirms_tags_in_the_style_github_has(bisected, upstream_index, hub):
    work, cache, recipe, _ = bisected
    hub.add_tags("octo/upb", "1.0.0", "1.1.0")  # unprefixed, unlike the guess
    res = _run(work, cache, recipe, upstream_index, env=_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)).json
    b = next(r for r in res["source_ranges"] if r["package"] == "upb")
    assert (b["confirmed"], b["from"], b["to"]) == (True, "1.0.0", "1.1.0")
    assert b["url"] == "https://github.com/octo/upb/compare/1.0.0...1.1.0"
    assert res["executed"] == 0, "a rerun reuses both probes, and their sources with them"
    looked = [h.path for h in hub.hits if "/git/ref/tags/" in h.path]
    assert looked and all(h.authorized for h in hub.hits), "every lookup carried the token"
    assert all("/octo/upb/" in p for p in looked), "commit ranges and packages without a repository are not looked up"


def test_a_missing_tag_leaves_the_range_unconfirmed_and_says_which(bisected, upstream_index, hub):
    work, cache, recipe, _ = bisected
    hub.tags.clear()
    hub.add_tags("octo/upb", "v1.0.0")  # v1.1.0 was never tagged
    res = _run(work, cache, recipe, upstream_index, env=_env(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)).json
    b = next(r for r in res["source_ranges"] if r["package"] == "upb")
    assert b["confirmed"] is False
    assert b["url"] == "https://github.com/octo/upb/compare/v1.0.0...v1.1.0"
    assert "GitHub has no tag v1.1.0 / 1.0.0 / 1.1.0 in https://github.com/octo/upb" == b["note"]
    assert TOKEN not in str(res)


def _fake_python(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _markers(cache: Path) -> dict[str, Path]:
    """The bisected envs' markers by upa version."""
    found = {}
    for marker in (cache / "envs").glob("*/envbisect-env.json"):
        found[json.loads(marker.read_text())["resolved"]["upa"]] = marker
    return found


def test_an_env_is_read_once_when_built_and_its_probes_take_the_read_from_its_marker(bisected, upstream_index):
    """The build reads what the env was built from (in this process) and keeps it in the
    env's marker; every probe in the env takes it from there instead of starting the env's
    interpreter again after its recipe. An env whose marker lacks it (built by an earlier
    envbisect), or whose read is damaged, is read after its recipe, as before. Shown with a
    marker edited to name another commit: the rerun's range names it, so the probe did not
    read the files."""
    work, cache, recipe, _ = bisected
    markers = _markers(cache)
    assert set(markers) == {"1.0.0", "1.1.0"}
    kept = json.loads(markers["1.1.0"].read_text())
    assert kept["sources"]["dists"]["upa"]["revision"] == NEW_SHA
    assert kept["sources"]["dists"]["upa"]["urls"]["Source"] == "https://github.com/octo/upa"
    original = markers["1.1.0"].read_text()
    try:
        edited = json.loads(original)
        edited["sources"]["dists"]["upa"]["revision"] = "3" * 40
        markers["1.1.0"].write_text(json.dumps(edited))
        res = _run(work, cache, recipe, upstream_index, "--no-reuse").json
        assert res["executed"] == 2
        assert res["source_range"]["to"] == "3" * 40, "the probe took the build's read from the marker"
        for damaged in (None, {"dists": "not a mapping"}):  # an earlier envbisect's marker; a damaged one
            if damaged is None:
                del edited["sources"]
            else:
                edited["sources"] = damaged
            markers["1.1.0"].write_text(json.dumps(edited))
            res = _run(work, cache, recipe, upstream_index, "--no-reuse").json
            assert res["source_range"]["to"] == NEW_SHA, f"marker sources {damaged}: the probe reads the env itself"
    finally:
        markers["1.1.0"].write_text(original)


@pytest.mark.parametrize("body, timeout, error", [
    ("exit 3", 30, "reading the sources exited 3"),
    ("echo not json", 30, "reading the sources printed no JSON"),
    ("exec sleep 30", 0.5, "reading the sources timed out after 0.5 s"),
])
def test_the_source_probe_never_fails_a_probe(tmp_path, body, timeout, error) -> None:
    assert read_sources(_fake_python(tmp_path, body), scrubbed_environ(), timeout) == {"dists": {}, "error": error}


def test_the_source_probe_reads_metadata_with_a_real_interpreter(tmp_path) -> None:
    assert "cannot start" in read_sources(tmp_path / "missing", {}, 5)["error"]
    found = read_sources(Path(sys.executable), scrubbed_environ(), 30)
    assert "error" not in found
    assert found["dists"]["packaging"]["urls"]["Source"] == "https://github.com/pypa/packaging"


@pytest.mark.parametrize("version, embedded, expected", [
    ("2.21.0", b"v2.21.0-rc1-5-ga481b10260d", "a481b10260d"),
    ("2.20.0", b"v2.21.0-rc1-5-ga481b10260d", None),  # describes another version: not taken
])
@pytest.mark.parametrize("where", ["at build time, in process", "in the env's interpreter"])
def test_tensorflows_git_version_is_read_from_its_small_library(tmp_path, version, expected, embedded, where) -> None:
    """tf.version.GIT_VERSION is compiled into tensorflow/python/client/_pywrap_tf_session.so;
    the read takes it from the bytes (a laid-out distribution, found on the path like an
    installed one), never by importing TensorFlow: the same read whether an env's build
    runs it here or an older env's interpreter runs it after its recipe."""
    site = _tensorflow_site(tmp_path, version, embedded)
    found = _read(site, where)
    assert found["dists"]["tensorflow"].get("revision") == expected, found


def _read(site: Path, where: str) -> dict:
    if where.startswith("at build time"):
        return {"dists": sourcescan.scan([str(site)])}
    return read_sources(Path(sys.executable), dict(scrubbed_environ(), PYTHONPATH=str(site)), 30)


@pytest.mark.parametrize("where", ["at build time, in process", "in the env's interpreter"])
def test_a_fifo_or_a_huge_file_where_a_version_file_should_be_is_skipped(tmp_path, where) -> None:
    """A FIFO is never opened (reading it would wait for a writer for ever) and a file over
    the size limit never read; the distribution is still described by its metadata."""
    site = _tensorflow_site(tmp_path, "2.21.0", b"v2.21.0-rc1-5-ga481b10260d")
    os.mkfifo(site / "tensorflow/version.py")
    (site / "tensorflow/_version.py").write_text("git_version = '" + "a" * 40 + "'\n" + "#" * 300_000)
    record = site / "tensorflow-2.21.0.dist-info/RECORD"
    record.write_text("tensorflow/version.py,,\ntensorflow/_version.py,,\n" + record.read_text())
    found = _read(site, where)
    assert found["dists"]["tensorflow"]["revision"] == "a481b10260d", found  # from the library, not the FIFO


@pytest.mark.parametrize("where", ["at build time, in process", "in the env's interpreter"])
def test_a_record_that_is_a_fifo_is_never_opened(tmp_path, where) -> None:
    """A RECORD that is no regular file reads as empty: the distribution is still described
    by its metadata, without a revision, and the read does not wait on the FIFO."""
    site = _tensorflow_site(tmp_path, "2.21.0", b"v2.21.0-rc1-5-ga481b10260d")
    record = site / "tensorflow-2.21.0.dist-info/RECORD"
    record.unlink()
    os.mkfifo(record)
    result: list[dict] = []
    reader = threading.Thread(target=lambda: result.append(_read(site, where)), daemon=True)
    reader.start()
    reader.join(30)  # a read that opened the FIFO would wait for a writer for ever
    assert result, "the read waited on the FIFO"
    found = result[0]
    assert "error" not in found, found
    tf = found["dists"]["tensorflow"]
    assert tf["urls"] == {"Download-URL": "https://github.com/tensorflow/tensorflow/tags"} and "revision" not in tf


def _tensorflow_site(tmp_path: Path, version: str, embedded: bytes) -> Path:
    site = tmp_path / "site"
    library = site / "tensorflow/python/client/_pywrap_tf_session.so"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"\x7fELF" + b"\0" * 4096 + embedded + b"\0" + b"\0" * 4096)
    (site / "tensorflow/__init__.py").write_text("raise SystemExit('imported')\n")
    info = site / f"tensorflow-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tensorflow\nVersion: {version}\n"
                                   "Download-URL: https://github.com/tensorflow/tensorflow/tags\n")
    (info / "RECORD").write_text("tensorflow/__init__.py,,\ntensorflow/python/client/_pywrap_tf_session.so,,\n")
    return site
