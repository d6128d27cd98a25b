"""Proof that the test kit is real: its wheels install and its index serves uv and pip.

Everything else in the integration suite trusts ``support.wheels`` and
``support.index_server``; these tests pin down that real installers accept them (uv
from the JSON and the HTML flavour, pip from the index, uv building the offline sdist),
and that the index speaks the protocols envbisect relies on: PEP 691 / PEP 503
pages with yanked, pre-release and upload-time facts, content negotiation,
conditional requests, basic auth, pruning and injected faults.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from support.index_server import HTML_TYPE, HTML_V1_TYPE, JSON_TYPE, LocalIndex, negotiate
from support.wheels import build_sdist, build_wheel

JSON_ACCEPT = {"Accept": JSON_TYPE}


def _tool_env(cache: Path) -> dict[str, str]:
    """The environment for uv/pip: no inherited index settings, a private cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(cache), UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PIP_CONFIG_FILE=os.devnull)
    return env


def _run(args: list[str | Path], env: dict[str, str]) -> str:
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


class UvVenv:
    """A fresh ``uv venv`` plus helpers to install into it and ask ``planted.VALUE``."""

    def __init__(self, uv: Path, root: Path) -> None:
        self.uv, self.env = uv, _tool_env(root / "uv-cache")
        self.path = root / "venv"
        _run([uv, "venv", "--quiet", "--python", sys.executable, self.path], self.env)
        self.python = self.path / "bin" / "python"

    def install(self, index_url: str, *requirements: str, dry_run: bool = False) -> str:
        extra = ["--dry-run", "--upgrade"] if dry_run else []
        return _run([self.uv, "pip", "install", "--python", self.python, "--index-url", index_url, *extra, *requirements], self.env)

    def value(self) -> str:
        return _run([self.python, "-c", "import planted; print(planted.VALUE)"], self.env).strip()


@pytest.fixture
def uv_venv(uv_bin: Path, tmp_path: Path) -> UvVenv:
    return UvVenv(uv_bin, tmp_path)


# -- wheels -------------------------------------------------------------------------


def test_wheel_layout_and_record(wheel_dir: Path) -> None:
    path = build_wheel(wheel_dir, "Foo.Bar", "1.0.0", tag="cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
                       requires_python=">=3.11", requires_dist=["numpy>=1.20"])
    assert path.name == "foo_bar-1.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    with zipfile.ZipFile(path) as zf:
        wheel = zf.read("foo_bar-1.0.0.dist-info/WHEEL").decode()
        metadata = zf.read("foo_bar-1.0.0.dist-info/METADATA").decode()
        record = zf.read("foo_bar-1.0.0.dist-info/RECORD").decode().splitlines()
        contents = {n: zf.read(n) for n in zf.namelist()}
    assert "Root-Is-Purelib: false" in wheel
    assert {line for line in wheel.splitlines() if line.startswith("Tag:")} == {
        "Tag: cp311-cp311-manylinux_2_17_x86_64", "Tag: cp311-cp311-manylinux2014_x86_64"}
    assert "Requires-Python: >=3.11" in metadata and "Requires-Dist: numpy>=1.20" in metadata
    assert contents["foo_bar/__init__.py"] == b'__version__ = "1.0.0"\n'
    for line in record:
        name, digest, size = line.split(",")
        if name.endswith("RECORD"):
            assert (digest, size) == ("", "")
            continue
        expected = base64.urlsafe_b64encode(hashlib.sha256(contents[name]).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(contents[name]))
    assert len(record) == len(contents)


def test_builds_are_reproducible(tmp_path: Path) -> None:
    """Same inputs, same bytes: hashes and ETags stay stable across a session."""
    for builder in (build_wheel, build_sdist):
        first = builder(tmp_path / "a", "planted", "1.0").read_bytes()
        assert builder(tmp_path / "b", "planted", "1.0").read_bytes() == first
        assert builder(tmp_path / "c", "planted", "1.1").read_bytes() != first


# -- installs with real uv and pip ----------------------------------------------------


@pytest.mark.parametrize("flavour", ["json", "html"])
def test_uv_installs_planted_from_each_flavour(flavour: str, planted_index_factory, uv_venv: UvVenv) -> None:
    planted = planted_index_factory(flavour=flavour)
    uv_venv.install(planted.url, "planted==1.5")
    assert uv_venv.value() == "1"
    uv_venv.install(planted.url, "planted==1.6")
    assert uv_venv.value() == "2"
    # uv honours the index's facts: yanked 1.3 is skipped, 2.1rc1 needs --pre, 1.7 has no Linux wheel.
    assert "planted==1.2" in uv_venv.install(planted.url, "planted<1.4", dry_run=True)
    assert "planted==2.0" in uv_venv.install(planted.url, "planted", dry_run=True)
    only_foreign = subprocess.run(
        [str(uv_venv.uv), "pip", "install", "--dry-run", "--python", str(uv_venv.python), "--index-url", planted.url,
         "planted>1.6,<1.8"], env=uv_venv.env, capture_output=True, text=True, timeout=120)
    assert only_foreign.returncode != 0 and "planted" in only_foreign.stderr
    expected_path = "/simple/planted/"
    assert any(path == expected_path for _, path in planted.index.requests)


def test_uv_builds_the_sdist_offline(planted_index, uv_venv: UvVenv) -> None:
    uv_venv.install(planted_index.url, "planted==0.9")
    assert uv_venv.value() == "1"


def test_pip_installs_from_the_index(planted_index, tmp_path: Path) -> None:
    target = tmp_path / "target"
    env = _tool_env(tmp_path / "cache")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--index-url", planted_index.url, "--target", target, "planted==1.6"], env)
    env["PYTHONPATH"] = str(target)
    assert _run([sys.executable, "-c", "import planted; print(planted.VALUE)"], env).strip() == "2"


def test_uv_installs_with_basic_auth(planted_index_factory, uv_venv: UvVenv) -> None:
    planted = planted_index_factory(auth=("alice", "s3cret"))
    assert planted.index.auth_url.startswith("http://alice:s3cret@127.0.0.1:")
    uv_venv.install(planted.index.auth_url, "planted==1.4")
    assert uv_venv.value() == "1"


# -- the protocol ---------------------------------------------------------------------


def test_json_page_lists_every_fact(planted_index) -> None:
    response = requests.get(f"{planted_index.url}/planted/", headers=JSON_ACCEPT, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_TYPE
    page = response.json()
    assert page["meta"]["api-version"] == "1.1" and page["name"] == "planted"
    assert "2.1rc1" in page["versions"] and page["versions"][0] == "0.9"
    files = {f["filename"]: f for f in page["files"]}
    assert files["planted-1.3-py3-none-any.whl"]["yanked"] == "planted: broken build"
    assert files["planted-1.4-py3-none-any.whl"]["yanked"] is False
    assert "planted-1.7-cp311-cp311-win_amd64.whl" in files and "planted-0.9.tar.gz" in files
    assert "planted-1.7-py3-none-any.whl" not in files
    wheel = files["planted-1.5-py3-none-any.whl"]
    assert wheel["requires-python"] == ">=3.8"
    assert wheel["upload-time"].endswith("Z")
    assert wheel["hashes"]["sha256"] == hashlib.sha256(planted_index.get("1.5").path.read_bytes()).hexdigest()
    download = requests.get(wheel["url"], timeout=10)
    assert hashlib.sha256(download.content).hexdigest() == wheel["hashes"]["sha256"]
    times = [files[v.path.name]["upload-time"] for v in planted_index.versions]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_html_page_carries_attributes(planted_index_factory) -> None:
    planted = planted_index_factory(flavour="html")
    response = requests.get(f"{planted.url}/planted/", headers=JSON_ACCEPT, timeout=10)
    assert response.headers["Content-Type"].startswith(HTML_TYPE)  # never JSON, whatever was asked
    body = response.text
    assert 'href="../../files/planted-1.5-py3-none-any.whl#sha256=' in body
    assert 'data-requires-python="&gt;=3.8"' in body
    assert 'data-yanked="planted: broken build"' in body
    assert 'data-upload-time="2024-01-01T00:00:00.000000Z"' in body  # 0.9, the first upload


def test_content_negotiation() -> None:
    assert negotiate(None) == HTML_TYPE
    assert negotiate("*/*") == HTML_TYPE
    assert negotiate(f"{JSON_TYPE}, {HTML_V1_TYPE};q=0.2, text/html;q=0.01") == JSON_TYPE
    assert negotiate(f"{JSON_TYPE};q=0.1, {HTML_V1_TYPE}") == HTML_V1_TYPE
    assert negotiate("application/vnd.pypi.simple.latest+json") == JSON_TYPE
    assert negotiate(f"{JSON_TYPE};q=0") == HTML_TYPE


def test_format_query_and_head(planted_index) -> None:
    page = f"{planted_index.url}/planted/"
    as_json = requests.get(page, params={"format": JSON_TYPE}, headers={"Accept": "text/html"}, timeout=10)
    assert as_json.headers["Content-Type"] == JSON_TYPE and as_json.json()["name"] == "planted"
    head = requests.head(page, headers=JSON_ACCEPT, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == len(as_json.content)
    assert head.headers["ETag"] == as_json.headers["ETag"]


def test_planted_scenario(planted_index) -> None:
    """The facts other tests rely on: which versions a default search keeps, and VALUE."""
    assert planted_index.installable == ["1.0", "1.1", "1.2", "1.4", "1.5", "1.6", "1.8", "1.9", "2.0"]
    assert {v.version: v.value for v in planted_index.versions if v.value == 2} == {
        "1.6": 2, "1.7": 2, "1.8": 2, "1.9": 2, "2.0": 2, "2.1rc1": 2}
    assert planted_index.get("1.3").yanked and planted_index.get("2.1rc1").prerelease
    assert planted_index.get("0.9").path.name == "planted-0.9.tar.gz"


def test_serves_while_publishing(local_index, wheel_dir: Path) -> None:
    """add() from one thread while many clients read: no errors, no torn pages."""
    index = local_index()
    index.add(build_wheel(wheel_dir, "busy", "0.1"))
    wheels = [build_wheel(wheel_dir, "busy", f"1.{n}") for n in range(20)]

    def fetch(_: int) -> int:
        response = requests.get(f"{index.url}/busy/", headers=JSON_ACCEPT, timeout=10)
        return len(response.json()["files"]) if response.status_code == 200 else -1

    with ThreadPoolExecutor(max_workers=8) as pool:
        reads = pool.map(fetch, range(40))
        for path in wheels:
            index.add(path)
        counts = list(reads)
    assert all(1 <= c <= 21 for c in counts)
    assert fetch(0) == 21


def test_a_page_is_rendered_once_per_change(local_index, wheel_dir: Path) -> None:
    """Revalidations (uv's, once per resolve) reuse the rendered page; every add and remove
    renders it afresh, so a client never sees a page older than the last change."""
    index = local_index()
    for version in ("1.0", "1.1"):
        index.add(build_wheel(wheel_dir, "paged", version))
    first, _ = index.render_project("paged", JSON_ACCEPT["Accept"])
    again, _ = index.render_project("paged", JSON_ACCEPT["Accept"])
    assert again is first, "an unchanged page is not rendered again"
    index.remove("paged-1.1-py3-none-any.whl")
    after_remove, _ = index.render_project("paged", JSON_ACCEPT["Accept"])
    assert [f["filename"] for f in json.loads(after_remove)["files"]] == ["paged-1.0-py3-none-any.whl"]
    index.add(build_wheel(wheel_dir, "paged", "1.2"))
    listed = requests.get(f"{index.url}/paged/", headers=JSON_ACCEPT, timeout=10).json()["files"]
    assert [f["filename"] for f in listed] == ["paged-1.0-py3-none-any.whl", "paged-1.2-py3-none-any.whl"]


def test_unknown_flavour_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flavour"):
        LocalIndex(tmp_path, flavour="xml")


def test_json_flavour_always_answers_json(planted_index_factory) -> None:
    planted = planted_index_factory(flavour="json")
    response = requests.get(f"{planted.url}/", headers={"Accept": "text/html"}, timeout=10)
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.json()["projects"] == [{"name": "planted"}]


def test_conditional_requests(planted_index, wheel_dir: Path) -> None:
    page = f"{planted_index.url}/planted/"
    first = requests.get(page, headers=JSON_ACCEPT, timeout=10)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = requests.get(page, headers={**JSON_ACCEPT, "If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    since = requests.get(page, headers={**JSON_ACCEPT, "If-Modified-Since": modified}, timeout=10)
    assert since.status_code == 304
    # The HTML representation has its own ETag: a JSON validator must not match it.
    html_page = requests.get(page, headers={"Accept": "text/html", "If-None-Match": etag}, timeout=10)
    assert html_page.status_code == 200
    # Publishing changes the page, so the old validators no longer match.
    planted_index.index.add(build_wheel(wheel_dir, "planted", "2.2"))
    changed = requests.get(page, headers={**JSON_ACCEPT, "If-None-Match": etag}, timeout=10)
    assert changed.status_code == 200 and "2.2" in changed.json()["versions"]
    assert requests.get(page, headers={**JSON_ACCEPT, "If-Modified-Since": modified}, timeout=10).status_code == 200
    assert ("GET", "/simple/planted/") in planted_index.index.requests
    assert [h.status for h in planted_index.index.log] == [200, 304, 304, 200, 200, 200]
    assert planted_index.index.log[1].headers["If-None-Match"] == etag


def test_basic_auth(planted_index_factory) -> None:
    planted = planted_index_factory(auth=("alice", "s3cret"))
    denied = requests.get(f"{planted.url}/planted/", timeout=10)
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = requests.get(f"{planted.url}/planted/", auth=("alice", "nope"), timeout=10)
    assert wrong.status_code == 401
    allowed = requests.get(f"{planted.index.auth_url}/planted/", headers=JSON_ACCEPT, timeout=10)
    assert allowed.status_code == 200 and allowed.json()["name"] == "planted"


def test_names_redirects_and_unknown_projects(planted_index) -> None:
    moved = requests.get(f"{planted_index.url}/Planted", allow_redirects=False, timeout=10)
    assert moved.status_code == 301 and moved.headers["Location"] == "/simple/planted/"
    assert requests.get(f"{planted_index.url}/PLANTED/", headers=JSON_ACCEPT, timeout=10).json()["name"] == "planted"
    assert requests.get(f"{planted_index.url}/no-such-project/", timeout=10).status_code == 404
    assert requests.get(f"{planted_index.index.base}/files/nothing.whl", timeout=10).status_code == 404


def test_remove_prunes_listing_and_file(planted_index) -> None:
    name = planted_index.get("1.2").path.name
    file_url = f"{planted_index.index.base}/files/{name}"
    assert requests.get(file_url, timeout=10).status_code == 200
    planted_index.index.remove(name)
    assert requests.get(file_url, timeout=10).status_code == 404
    page = requests.get(f"{planted_index.url}/planted/", headers=JSON_ACCEPT, timeout=10).json()
    assert name not in {f["filename"] for f in page["files"]} and "1.2" not in page["versions"]


def test_wheel_metadata_is_served(planted_index) -> None:
    """PEP 658: installers fetch ``<wheel>.metadata`` instead of the whole wheel."""
    page = requests.get(f"{planted_index.url}/planted/", headers=JSON_ACCEPT, timeout=10).json()
    wheel = next(f for f in page["files"] if f["filename"] == "planted-1.5-py3-none-any.whl")
    metadata = requests.get(wheel["url"] + ".metadata", timeout=10)
    assert hashlib.sha256(metadata.content).hexdigest() == wheel["core-metadata"]["sha256"]
    assert b"Version: 1.5" in metadata.content
    sdist = next(f for f in page["files"] if f["filename"].endswith(".tar.gz"))
    assert "core-metadata" not in sdist


def test_injected_faults_then_recovery(planted_index) -> None:
    planted_index.index.fail_next(2, status=503, retry_after=1)
    for _ in range(2):
        failed = requests.get(f"{planted_index.url}/planted/", timeout=10)
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert requests.get(f"{planted_index.url}/planted/", timeout=10).status_code == 200


def test_stop_releases_the_port(local_index) -> None:
    index = local_index()
    url = index.url
    assert requests.get(f"{url}/", timeout=10).status_code == 200
    index.stop()
    index.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/", timeout=5)


def test_root_page_lists_projects(local_index, wheel_dir: Path) -> None:
    index = local_index()
    index.add(build_wheel(wheel_dir, "Zeta_Pkg", "1.0"))
    index.add(build_sdist(wheel_dir, "alpha", "0.1"))
    listing = requests.get(f"{index.url}/", headers=JSON_ACCEPT, timeout=10).json()
    assert listing["projects"] == [{"name": "alpha"}, {"name": "zeta-pkg"}]
    html_listing = requests.get(f"{index.url}/", timeout=10).text
    assert '<a href="zeta-pkg/">zeta-pkg</a>' in html_listing
    assert json.loads(requests.get(f"{index.url}/zeta-pkg/", headers=JSON_ACCEPT, timeout=10).text)["versions"] == ["1.0"]
