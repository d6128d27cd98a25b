"""A fingerprint of this host's hardware and system software, for reusing probe results.

Whether a recipe passes can depend on the machine as much as on the package versions:
the kernel, the C library, the CPU model (instruction sets, numerics of vendor math
libraries) and the GPU with its driver. A stored probe result is therefore only reused
on a host with an identical fingerprint, and :func:`describe` puts the same facts into
reports in one line.

The fingerprint describes the *kind* of machine, never the machine itself: no hostname,
user name, IP or MAC address, serial number or anything else unique to one box. CI
runners with random hostnames must get the same fingerprint as their identical siblings
(so they share results), and the fingerprint may end up in a public bug report.

Detection never raises and never hangs: each helper program (``nvidia-smi``,
``sysctl``, ``system_profiler``) runs with a timeout, and a missing program, a failure,
a non-zero exit or a timeout all read as "not detected" (an empty string). The parsing
of their output is done by pure functions so it can be tested on captured samples.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envbisect import procs

#: The keys of every fingerprint, in display order.
KEYS = ("os", "os_release", "libc", "machine", "cpu", "gpu")
#: Seconds allowed to ``nvidia-smi`` (it can stall for a long time on a wedged driver).
NVIDIA_SMI_TIMEOUT_S = 10.0
#: Seconds allowed to ``system_profiler`` (slow: it queries every display).
SYSTEM_PROFILER_TIMEOUT_S = 15.0
#: Seconds allowed to quick helpers (``sysctl``, the musl loader).
QUICK_TIMEOUT_S = 5.0
#: Length of :func:`fingerprint_id` (hex digits of a sha256).
ID_LENGTH = 16

_OS_NAMES = {"Darwin": "macOS"}


def fingerprint() -> dict[str, str]:
    """This host's fingerprint: a dict with every key of :data:`KEYS` (a value is ""
    when unknown). Detected once per process; each call returns a fresh copy."""
    return dict(_cached_fingerprint())


@functools.lru_cache(maxsize=1)
def _cached_fingerprint() -> tuple[tuple[str, str], ...]:
    # Cached as a tuple of pairs so no caller can mutate the cached value.
    return tuple(detect().items())


def detect() -> dict[str, str]:
    """Detect the fingerprint now, without the per-process cache (use
    :func:`fingerprint` instead; this one runs the helper programs every time)."""
    system = platform.system()
    return {
        "os": system,
        "os_release": _os_release(system),
        "libc": _libc(system),
        "machine": platform.machine(),
        "cpu": _cpu(system),
        "gpu": _gpu(system),
    }


def fingerprint_id(fp: Mapping[str, str] | None = None) -> str:
    """A short stable id of ``fp`` (default: this host's fingerprint): the first
    :data:`ID_LENGTH` hex digits of the sha256 of its canonical JSON (sorted keys, no
    whitespace). Equal fingerprints give equal ids on every platform and Python."""
    values = fingerprint() if fp is None else dict(fp)
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ID_LENGTH]


def describe(fp: Mapping[str, str] | None = None) -> str:
    """One line for reports, e.g. "Linux 6.1.0-18-amd64 (glibc 2.36), x86_64, Intel(R)
    Xeon(R) Gold 6338 CPU @ 2.00GHz, no GPU detected" (default: this host)."""
    values = fingerprint() if fp is None else fp
    system = values.get("os", "") or "unknown OS"
    head = " ".join(part for part in (_OS_NAMES.get(system, system), values.get("os_release", "")) if part)
    if values.get("libc"):
        head += f" ({values['libc']})"
    parts = [head, values.get("machine", ""), values.get("cpu", "")]
    parts.append(values.get("gpu", "") or "no GPU detected")
    return ", ".join(part for part in parts if part)


# --- operating system and C library ---------------------------------------------------


def _os_release(system: str) -> str:
    """Kernel release on Linux; "14.4.1 (kernel 23.4.0)" on macOS; the build version
    ("10.0.22631") on Windows, where the release alone ("10") hides Windows 11."""
    if system == "Darwin":
        product, kernel = platform.mac_ver()[0], platform.release()
        return f"{product} (kernel {kernel})" if product else kernel
    if system == "Windows":
        return platform.version()
    return platform.release()


def _libc(system: str) -> str:
    """"glibc 2.36", "musl 1.2.4" (or just "musl"), or "" when unknown or not Linux."""
    if system != "Linux":
        return ""
    lib, version = platform.libc_ver()
    if lib == "glibc" and version:
        return f"glibc {version}"
    musl = _musl()
    if musl:
        return musl
    return f"{lib} {version}".strip()


def _musl() -> str:
    """"musl 1.2.4" when a musl loader is installed ("musl" if it will not say its
    version), else "". The loader run without arguments prints its version and exits 1."""
    loaders = sorted(glob.glob("/lib/ld-musl-*.so.1"))
    if not loaders:
        return ""
    done = _run([loaders[0]], QUICK_TIMEOUT_S)
    match = re.search(r"^Version\s+(\S+)", done.stderr if done else "", re.MULTILINE)
    return f"musl {match.group(1)}" if match else "musl"


# --- CPU ------------------------------------------------------------------------------


def _cpu(system: str) -> str:
    """The CPU model name, whitespace collapsed; "" when unknown."""
    model = ""
    if system == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                model = parse_cpuinfo(fh.read())
        except OSError:
            model = ""
    elif system == "Darwin":
        done = _run(["sysctl", "-n", "machdep.cpu.brand_string"], QUICK_TIMEOUT_S)
        model = done.stdout if done and done.returncode == 0 else ""
    if not model:
        model = platform.processor()
    return " ".join(model.split())


def parse_cpuinfo(text: str) -> str:
    """The CPU model from Linux ``/proc/cpuinfo`` text: the first "model name" (x86,
    most arm64 kernels since 5.x do not have one), else "Hardware" (older ARM boards),
    else "cpu model" (MIPS), else the ARM "CPU implementer"/"CPU part" ids; "" if none."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if sep and value and key not in fields:
            fields[key] = value
    for key in ("model name", "hardware", "cpu model"):
        if fields.get(key):
            return " ".join(fields[key].split())
    if "cpu implementer" in fields and "cpu part" in fields:
        return f"ARM implementer {fields['cpu implementer']} part {fields['cpu part']}"
    return ""


# --- GPU ------------------------------------------------------------------------------


def _gpu(system: str) -> str:
    """"; "-joined sorted GPU descriptions, "" when none is detected."""
    entries = _nvidia_gpus()
    if system == "Darwin":
        entries += _macos_gpus()
    return "; ".join(sorted(entries))


def _nvidia_gpus() -> list[str]:
    """NVIDIA GPUs as "NAME (driver VERSION)", from ``nvidia-smi`` when it is on PATH."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        NVIDIA_SMI_TIMEOUT_S,
    )
    if done is None or done.returncode != 0:
        return []
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> list[str]:
    """Parse ``nvidia-smi --query-gpu=name,driver_version --format=csv,noheader``
    output, one GPU a line ("NVIDIA H100 80GB HBM3, 550.54.15"), into
    ["NVIDIA H100 80GB HBM3 (driver 550.54.15)"], in input order. Lines without both
    fields are skipped (nvidia-smi prints its errors on stdout too)."""
    gpus = []
    for line in text.splitlines():
        name, sep, driver = line.rpartition(",")
        name, driver = name.strip(), driver.strip()
        if sep and name and driver and not driver.startswith("["):  # "[N/A]", "[Unknown Error]"
            gpus.append(f"{name} (driver {driver})")
    return gpus


def _macos_gpus() -> list[str]:
    """macOS GPUs from ``system_profiler SPDisplaysDataType -json``."""
    done = _run(["system_profiler", "SPDisplaysDataType", "-json"], SYSTEM_PROFILER_TIMEOUT_S)
    if done is None or done.returncode != 0:
        return []
    return parse_system_profiler(done.stdout)


def parse_system_profiler(text: str) -> list[str]:
    """Parse ``system_profiler SPDisplaysDataType -json`` output into one entry per GPU:
    its chipset model plus its Metal support when reported ("Apple M1 Pro (Metal 3)").

    Only those two fields are read: the same output lists the attached displays with
    their serial numbers, which must never reach a fingerprint. Text that is not the
    expected JSON gives [] rather than an error."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    items = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    gpus = []
    for item in items:
        if not isinstance(item, dict):
            continue
        model = item.get("sppci_model") or item.get("_name")
        if not isinstance(model, str) or not model.strip():
            continue
        model = " ".join(model.split())
        metal = _metal_support(item)
        gpus.append(f"{model} ({metal})" if metal else model)
    return gpus


def _metal_support(item: Mapping[str, object]) -> str:
    """The GPU's Metal support, readable: "Metal 3" from "spdisplays_metal3" (macOS 12+
    ``spdisplays_mtlgpufamilysupport``); the older ``spdisplays_metalfamily`` /
    ``spdisplays_metal`` values ("spdisplays_mtlgpufamilymac2" -> "Metal GPU family
    mac2", "spdisplays_supported" -> "Metal supported", free text kept as is); "" when
    none is reported."""
    for key in ("spdisplays_mtlgpufamilysupport", "spdisplays_metalfamily", "spdisplays_metal"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        value = " ".join(value.split()).removeprefix("spdisplays_")
        if number := re.fullmatch(r"(?:metal)?(\d+)", value):
            return f"Metal {number.group(1)}"
        if family := re.fullmatch(r"mtlgpufamily(\w+)", value):
            return f"Metal GPU family {family.group(1)}"
        if value == "supported":
            return "Metal supported"
        return value.replace("_", " ")
    return ""


# --- running helper programs ----------------------------------------------------------


@dataclass(frozen=True)
class _Done:
    returncode: int
    stdout: str
    stderr: str


def _run(argv: Sequence[str], timeout: float) -> _Done | None:
    """Run a helper program: its status and output, or None when it cannot be started
    or runs past ``timeout`` seconds (then it and its own children are killed).

    The helper gets its own session so a timeout kills the whole group (a shell wrapper
    and what it started), and the wait after the kill is bounded too: a program stuck
    in the kernel (a wedged GPU driver) cannot be killed at once and must not hang us."""
    try:
        proc = procs.popen(  # dies with envbisect; never taken for an adopted orphan
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=os.name == "posix",
        )
    except (OSError, ValueError):
        return None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return None
    return _Done(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _kill(proc: subprocess.Popen) -> None:
    """Kill a timed-out helper and its group, close its pipes, reap it if it goes at
    once (Popen reaps it later otherwise)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass
