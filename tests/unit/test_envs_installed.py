"""What an env has installed is read from its site-packages (no installer process):
names canonicalised and versions as the metadata says, as ``pip list`` reports them."""

from __future__ import annotations

from envbisect.envs import installed


def _dist(site, dirname: str, name: str, version: str) -> None:
    info = site / dirname
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_reads_every_dist_info_of_the_one_site_packages(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    _dist(site, "Typing_Extensions-4.12.2.dist-info", "Typing_Extensions", "4.12.2")
    _dist(site, "torch-2.13.0+cpu.dist-info", "torch", "2.13.0+cpu")
    (site / "torch").mkdir()
    assert installed(tmp_path) == {"typing-extensions": "4.12.2", "torch": "2.13.0+cpu"}


def test_an_empty_env_has_nothing_and_an_unknown_layout_asks_the_installer(tmp_path):
    (tmp_path / "env" / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    assert installed(tmp_path / "env") == {}
    assert installed(tmp_path / "nothing-here") is None
    for minor in ("3.11", "3.12"):  # two interpreters' trees: which one is the env's is unclear
        (tmp_path / "two" / "lib" / f"python{minor}" / "site-packages").mkdir(parents=True)
    assert installed(tmp_path / "two") is None
