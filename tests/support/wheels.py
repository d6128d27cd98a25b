"""Build real, installable wheels and sdists for tests, without any build backend.

Integration tests need a package index full of small releases with known contents
(a planted regression, a yanked release, a wheel for another platform, an sdist-only
release). Building them with a real backend would need the network and take seconds
each; writing the archives directly takes milliseconds and gives byte-for-byte
reproducible files (fixed timestamps), so hashes and ETags are stable within a run.

The archives follow the specifications closely enough that real ``uv pip install``
and pip accept them: the wheel filename and ``.dist-info`` directory use
:mod:`packaging.utils` normalisation, ``WHEEL`` lists every tag of a compressed tag
set, and ``RECORD`` carries urlsafe-base64 sha256 digests and sizes. The sdist
carries ``PKG-INFO`` and a ``pyproject.toml`` whose in-tree backend (``backend-path``)
builds a wheel with the standard library only, so even ``--allow-build`` paths can
be exercised offline.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.tags import parse_tag
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

#: Fixed timestamp for every archive member: the same inputs give the same bytes.
_ZIP_DATE = (2020, 2, 2, 0, 0, 0)
_TAR_MTIME = 1580601600  # 2020-02-02T00:00:00Z

#: The in-tree PEP 517 backend shipped inside every sdist. It needs nothing but the
#: standard library, so a frontend can build the sdist without network access.
_SDIST_BACKEND = '''\
"""Minimal offline PEP 517 backend for test sdists: packs the tree into a wheel."""
import base64, hashlib, os, zipfile

NAME, VERSION = {dist_name!r}, {version!r}
SKIP = {{"PKG-INFO", "pyproject.toml", "_offline_backend.py"}}


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    with open("PKG-INFO", "rb") as fh:
        metadata = fh.read()
    members = []
    for folder, dirs, names in os.walk("."):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(folder, name), ".").replace(os.sep, "/")
            if rel not in SKIP:
                with open(rel, "rb") as fh:
                    members.append((rel, fh.read()))
    members.append((dist_info + "/METADATA", metadata))
    members.append((dist_info + "/WHEEL", b"Wheel-Version: 1.0\\nGenerator: offline\\n"
                    b"Root-Is-Purelib: true\\nTag: py3-none-any\\n"))
    record = "".join("%s,sha256=%s,%d\\n" % (p, _digest(d), len(d)) for p, d in members)
    record += dist_info + "/RECORD,,\\n"
    members.append((dist_info + "/RECORD", record.encode()))
    filename = "%s-%s-py3-none-any.whl" % (NAME, VERSION)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
        for path, data in members:
            zf.writestr(path, data)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("test sdists are prebuilt; rebuilding them is not supported")
'''


def dist_name(name: str) -> str:
    """The filename form of a project name: canonical, with ``_`` for ``-``.

    Wheel and sdist filenames (and ``.dist-info`` directories) use this form, so
    ``Foo.Bar`` and ``foo-bar`` produce the same archive names.
    """
    return canonicalize_name(name).replace("-", "_")


def default_files(name: str, version: str) -> dict[str, str]:
    """A single module named after the project that records its own version."""
    return {f"{dist_name(name)}/__init__.py": f'__version__ = "{version}"\n'}


def core_metadata(
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    metadata_version: str = "2.1",
    extra_metadata: Sequence[str] = (),
) -> str:
    """Core metadata text (``METADATA`` / ``PKG-INFO``) for a release; ``extra_metadata``
    are further header lines (``Project-URL: Source, https://...``, ``Home-page: ...``)."""
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {req}" for req in requires_dist)
    lines.extend(extra_metadata)
    return "\n".join(lines) + "\n"


def _record_digest(data: bytes) -> str:
    """RECORD's hash form: urlsafe base64 of the sha256 digest, padding stripped."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _zip_member(zf: zipfile.ZipFile, path: str, data: bytes) -> None:
    """Write one member with a fixed date and ordinary file permissions."""
    info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    files: Mapping[str, str] | None = None,
    tag: str = "py3-none-any",
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    extra_metadata: Sequence[str] = (),
) -> Path:
    """Write a wheel for ``name`` ``version`` into ``dest`` and return its path.

    ``files`` maps archive paths to text (default: :func:`default_files`);
    ``extra_metadata`` are header lines added to ``METADATA``. ``tag``
    may be a compressed tag set (``py2.py3-none-any``); ``WHEEL`` gets one ``Tag``
    line per expanded tag, and ``Root-Is-Purelib`` is true only when every tag is
    pure (``none`` ABI, ``any`` platform).
    """
    dest.mkdir(parents=True, exist_ok=True)
    canonical_version = str(Version(version))
    filename = f"{dist_name(name)}-{canonical_version}-{tag}.whl"
    # Validate the name with packaging's own parser: a bad tag or version fails here,
    # in the test that asked for it, instead of as an obscure installer error later.
    _, _, _, tags = parse_wheel_filename(filename)
    purelib = all(t.abi == "none" and t.platform == "any" for t in tags)
    dist_info = f"{dist_name(name)}-{canonical_version}.dist-info"

    members = [(path, text.encode("utf-8")) for path, text in sorted((files or default_files(name, version)).items())]
    metadata = core_metadata(name, canonical_version, requires_python=requires_python, requires_dist=requires_dist,
                             extra_metadata=extra_metadata)
    wheel_lines = ["Wheel-Version: 1.0", "Generator: envbisect-tests", f"Root-Is-Purelib: {str(purelib).lower()}"]
    wheel_lines.extend(f"Tag: {t}" for t in sorted(str(t) for t in parse_tag(tag)))
    members.append((f"{dist_info}/METADATA", metadata.encode("utf-8")))
    members.append((f"{dist_info}/WHEEL", ("\n".join(wheel_lines) + "\n").encode("utf-8")))
    record = "".join(f"{path},{_record_digest(data)},{len(data)}\n" for path, data in members)
    record += f"{dist_info}/RECORD,,\n"  # RECORD cannot hash itself
    members.append((f"{dist_info}/RECORD", record.encode("utf-8")))

    path = dest / filename
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members:
            _zip_member(zf, member, data)
    return path


def build_sdist(
    dest: Path,
    name: str,
    version: str,
    *,
    files: Mapping[str, str] | None = None,
    requires_python: str | None = None,
) -> Path:
    """Write ``<name>-<version>.tar.gz`` into ``dest`` and return its path.

    The archive has one top-level directory with ``PKG-INFO`` (Metadata-Version 2.2,
    nothing dynamic, so frontends may trust it without building), a ``pyproject.toml``
    and the ``files``. Its in-tree backend builds a pure wheel offline.
    """
    dest.mkdir(parents=True, exist_ok=True)
    canonical_version = str(Version(version))
    filename = f"{dist_name(name)}-{canonical_version}.tar.gz"
    parse_sdist_filename(filename)  # same early validation as for wheels
    top = f"{dist_name(name)}-{canonical_version}"
    rp = f'requires-python = "{requires_python}"\n' if requires_python is not None else ""
    pyproject = (
        "[build-system]\nrequires = []\n"
        'build-backend = "_offline_backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "{canonical_version}"\n{rp}'
    )
    members = {
        "PKG-INFO": core_metadata(name, canonical_version, requires_python=requires_python, metadata_version="2.2"),
        "pyproject.toml": pyproject,
        "_offline_backend.py": _SDIST_BACKEND.format(dist_name=dist_name(name), version=canonical_version),
        **(files or default_files(name, version)),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, text in sorted(members.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{top}/{member}")
            info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    path = dest / filename
    # gzip with mtime 0 so the compressed bytes, not just the tar, are reproducible.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return path


def read_core_metadata(path: Path) -> bytes | None:
    """The core metadata inside a wheel (``METADATA``) or sdist (``PKG-INFO``), or None.

    What an index serves as ``<wheel>.metadata`` (PEP 658) and derives
    ``Requires-Python`` from.
    """
    try:
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
                return zf.read(names[0]) if names else None
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                member = next((m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")), None)
                handle = tar.extractfile(member) if member else None
                return handle.read() if handle else None
    except (OSError, zipfile.BadZipFile, tarfile.TarError):
        return None  # a deliberately broken file is still publishable
    return None


def metadata_field(metadata: bytes | None, name: str) -> str | None:
    """One header of core metadata, e.g. ``Requires-Python``."""
    for line in (metadata or b"").decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
        if not line.strip():
            break  # headers end at the first blank line; the body is free text
    return None
