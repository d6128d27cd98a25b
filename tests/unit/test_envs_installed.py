"""What an env has installed is read from its site-packages (no installer process):
names canonicalised and versions as the metadata says, as ``pip list`` reports them; and
the names an env holds, which show what a recipe changed in it."""

from __future__ import annotations

from envbisect.envguard import describe
from envbisect.envs import entries, installed


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


def test_an_envs_entries_are_its_site_packages_and_scripts_and_a_change_is_named(tmp_path):
    """What :mod:`envbisect.envguard` compares: the names, ``__pycache__`` left out (the
    interpreter writes it when a recipe imports a top-level module)."""
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    _dist(site, "toypkg-1.0.dist-info", "toypkg", "1.0")
    (site / "six.py").write_text("")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    built = entries(tmp_path)
    assert built == ["bin/python", "six.py", "toypkg-1.0.dist-info"]
    (site / "__pycache__").mkdir()
    assert describe(built, entries(tmp_path)) is None
    (site / "toypkg-1.0.dist-info").rename(site / "toypkg-2.0.dist-info")
    for n in range(7):
        (site / f"zz{n}.pth").write_text("")
    assert describe(built, entries(tmp_path)) == (
        "added toypkg-2.0.dist-info, zz0.pth, zz1.pth, zz2.pth, zz3.pth and 3 more; removed toypkg-1.0.dist-info")
    assert entries(tmp_path / "nothing-here") is None
    assert describe(None, built) is None and describe(built, None) is None  # unknown: nothing can be told
