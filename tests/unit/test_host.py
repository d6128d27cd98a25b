"""host: the machine fingerprint that decides whether a stored probe result may be reused.

Detection runs for real on this (Linux, GPU-less) host; GPU detection is driven by fake
``nvidia-smi`` scripts put first on PATH. The macOS branch cannot run here, so its
parsing is tested on a sample of ``system_profiler -json`` output.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path

import pytest
from support.procs import is_running

from envbisect import host

SENTINEL_HOST = "envbisect-sentinel-host-7f3a9c"
LINUX = sys.platform.startswith("linux")
needs_posix = pytest.mark.skipif(os.name != "posix", reason="fake nvidia-smi is a shell script")


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """Write an executable ``nvidia-smi`` shell script with the given body into a
    directory put first on PATH; returns the script path."""

    def make(body: str) -> Path:
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "nvidia-smi"
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        return script

    return make


# --- the fingerprint of this host -----------------------------------------------------


def test_fingerprint_has_every_key_as_a_string():
    fp = host.fingerprint()
    assert tuple(fp) == host.KEYS
    assert all(isinstance(value, str) for value in fp.values())
    assert fp["os"] == platform.system() and fp["machine"] == platform.machine()


def test_fingerprint_is_cached_and_callers_cannot_change_the_cache():
    first = host.fingerprint()
    first["cpu"] = "tampered"
    first["extra"] = "x"
    again = host.fingerprint()
    assert again["cpu"] != "tampered" and "extra" not in again
    assert again == host.detect()


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.split(r"[^A-Za-z0-9-]+", text) if w}


@pytest.mark.parametrize("name", [socket.gethostname(), platform.node()])
def test_fingerprint_does_not_contain_the_hostname(name):
    if not name:
        pytest.skip("this host reports no name")
    fp = host.fingerprint()
    for key, value in fp.items():
        if len(name) >= 4:
            assert name.lower() not in value.lower(), (key, value)
        else:  # a very short name ("vm") may be a fragment of a model name: whole words
            assert name.lower() not in _words(value), (key, value)


def test_fingerprint_ignores_the_hostname(monkeypatch):
    before = host.detect()
    real_uname = platform.uname()
    monkeypatch.setattr(socket, "gethostname", lambda: SENTINEL_HOST)
    monkeypatch.setattr(platform, "node", lambda: SENTINEL_HOST)
    monkeypatch.setattr(platform, "uname", lambda: real_uname._replace(node=SENTINEL_HOST))
    after = host.detect()  # the uncached detection, so the patches are seen
    assert after == before
    assert host.fingerprint_id(after) == host.fingerprint_id(before)
    assert SENTINEL_HOST not in json.dumps(after)


@pytest.mark.skipif(not LINUX, reason="Linux reads /proc/cpuinfo and the C library version")
def test_linux_cpu_and_release_are_detected():
    fp = host.fingerprint()
    assert fp["cpu"], "no CPU model found in /proc/cpuinfo"
    assert fp["cpu"] == " ".join(fp["cpu"].split())
    assert fp["os_release"] == platform.release()
    lib, version = platform.libc_ver()
    if lib == "glibc":
        assert fp["libc"] == f"glibc {version}"


# --- the id ---------------------------------------------------------------------------

SAMPLE = {
    "os": "Linux",
    "os_release": "6.1.0-18-amd64",
    "libc": "glibc 2.36",
    "machine": "x86_64",
    "cpu": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
    "gpu": "NVIDIA H100 80GB HBM3 (driver 550.54.15)",
}


def test_id_is_the_short_hash_of_the_canonical_json():
    canonical = json.dumps(SAMPLE, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert host.fingerprint_id(SAMPLE) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", host.fingerprint_id(SAMPLE))
    assert host.fingerprint_id(dict(reversed(list(SAMPLE.items())))) == host.fingerprint_id(SAMPLE)


def test_id_of_this_host_is_stable():
    assert host.fingerprint_id() == host.fingerprint_id() == host.fingerprint_id(host.fingerprint())
    assert host.fingerprint_id() == host.fingerprint_id(host.detect())


@pytest.mark.parametrize("key", host.KEYS)
def test_id_changes_when_any_field_changes(key):
    changed = dict(SAMPLE, **{key: SAMPLE[key] + " "})
    assert host.fingerprint_id(changed) != host.fingerprint_id(SAMPLE)
    assert host.fingerprint_id(dict(SAMPLE, **{key: ""})) != host.fingerprint_id(SAMPLE)


# --- describe -------------------------------------------------------------------------


def test_describe_is_one_line():
    assert host.describe(SAMPLE) == (
        "Linux 6.1.0-18-amd64 (glibc 2.36), x86_64, Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz, "
        "NVIDIA H100 80GB HBM3 (driver 550.54.15)"
    )
    assert host.describe(dict(SAMPLE, gpu="")).endswith(", no GPU detected")
    mac = {"os": "Darwin", "os_release": "14.4.1 (kernel 23.4.0)", "libc": "", "machine": "arm64",
           "cpu": "Apple M1 Pro", "gpu": "Apple M1 Pro (Metal 3)"}
    assert host.describe(mac) == "macOS 14.4.1 (kernel 23.4.0), arm64, Apple M1 Pro, Apple M1 Pro (Metal 3)"
    assert host.describe({}) == "unknown OS, no GPU detected"
    this = host.describe()
    assert "\n" not in this and this.startswith(platform.system().replace("Darwin", "macOS"))


# --- GPU detection with a fake nvidia-smi ---------------------------------------------


@needs_posix
def test_no_nvidia_smi_means_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    if platform.system() != "Darwin":
        assert host.detect()["gpu"] == ""


@needs_posix
def test_gpu_from_nvidia_smi(fake_nvidia_smi, tmp_path):
    args = tmp_path / "args"
    fake_nvidia_smi(f'echo "$@" > {args}\necho "NVIDIA H100 80GB HBM3, 550.54.15"\n')
    fp = host.detect()
    if platform.system() != "Darwin":
        assert fp["gpu"] == "NVIDIA H100 80GB HBM3 (driver 550.54.15)"
    assert "NVIDIA H100 80GB HBM3 (driver 550.54.15)" in fp["gpu"]
    assert args.read_text().split() == ["--query-gpu=name,driver_version", "--format=csv,noheader"]
    assert host.fingerprint_id(fp) != host.fingerprint_id(dict(fp, gpu=""))


@needs_posix
def test_several_gpus_are_sorted_and_joined(fake_nvidia_smi):
    fake_nvidia_smi(
        'echo "Tesla V100-SXM2-16GB, 535.104.05"\n'
        'echo "NVIDIA A100-SXM4-40GB, 535.104.05"\n'
        'echo "NVIDIA A100-SXM4-40GB, 535.104.05"\n'
    )
    assert host.detect()["gpu"].startswith(
        "NVIDIA A100-SXM4-40GB (driver 535.104.05); NVIDIA A100-SXM4-40GB (driver 535.104.05); "
        "Tesla V100-SXM2-16GB (driver 535.104.05)"
    )


@needs_posix
def test_failing_nvidia_smi_means_no_gpu(fake_nvidia_smi):
    fake_nvidia_smi(
        'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver"\n'
        'echo "NVIDIA H100 80GB HBM3, 550.54.15"\n'
        "exit 9\n"
    )
    if platform.system() != "Darwin":
        assert host.detect()["gpu"] == ""


@needs_posix
def test_hanging_nvidia_smi_is_killed_at_the_timeout(fake_nvidia_smi, monkeypatch, tmp_path):
    pid_file = tmp_path / "nvidia-smi.pid"
    fake_nvidia_smi(f'echo "NVIDIA H100 80GB HBM3, 550.54.15"\necho $$ > {pid_file}\nexec sleep 60\n')
    monkeypatch.setattr(host, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    start = time.monotonic()
    fp = host.detect()
    assert time.monotonic() - start < 10
    if platform.system() != "Darwin":
        assert fp["gpu"] == ""
    assert not is_running(int(pid_file.read_text())), "the timed-out nvidia-smi was left running"


def test_missing_or_unrunnable_programs_read_as_not_detected(tmp_path):
    assert host._run([str(tmp_path / "no-such-program")], 1.0) is None
    not_executable = tmp_path / "plain.txt"
    not_executable.write_text("hello")
    assert host._run([str(not_executable)], 1.0) is None


def test_parse_nvidia_smi():
    text = "NVIDIA H100 80GB HBM3, 550.54.15\n\nNVIDIA GeForce RTX 4090, [N/A]\nNo devices were found\n"
    assert host.parse_nvidia_smi(text) == ["NVIDIA H100 80GB HBM3 (driver 550.54.15)"]
    assert host.parse_nvidia_smi("") == []


# --- Linux /proc/cpuinfo --------------------------------------------------------------


def test_parse_cpuinfo_fallbacks():
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  Gold 6338 CPU @ 2.00GHz\n"
    assert host.parse_cpuinfo(x86 * 2) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert host.parse_cpuinfo("processor : 0\nHardware : BCM2835\n") == "BCM2835"
    assert host.parse_cpuinfo("system type : MT7621\ncpu model : MIPS 1004Kc V2.15\n") == "MIPS 1004Kc V2.15"
    arm64 = "processor\t: 0\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0c\n"
    assert host.parse_cpuinfo(arm64) == "ARM implementer 0x41 part 0xd0c"
    assert host.parse_cpuinfo("") == ""


# --- macOS: system_profiler -----------------------------------------------------------
# The macOS branch (sysctl, system_profiler) cannot run on this Linux test host. The
# samples below follow the layout of ``system_profiler SPDisplaysDataType -json`` on
# macOS 12+ (trimmed; the display entries keep their serial-number fields to show they
# are never read), and the pure parser is tested on them.

APPLE_SILICON = """{
  "SPDisplaysDataType" : [
    {
      "_name" : "kHW_AppleM1ProItem",
      "spdisplays_mtlgpufamilysupport" : "spdisplays_metal3",
      "spdisplays_ndrvs" : [
        {
          "_name" : "Color LCD",
          "_spdisplays_display-product-id" : "a050",
          "_spdisplays_display-serial-number" : "fd626d62",
          "_spdisplays_display-vendor-id" : "610",
          "_spdisplays_displayID" : "1",
          "_spdisplays_pixels" : "3024 x 1964",
          "spdisplays_connection_type" : "spdisplays_internal",
          "spdisplays_main" : "spdisplays_yes"
        }
      ],
      "spdisplays_vendor" : "sppci_vendor_Apple",
      "sppci_bus" : "spdisplays_builtin",
      "sppci_cores" : "16",
      "sppci_device_type" : "spdisplays_gpu",
      "sppci_model" : "Apple M1 Pro"
    }
  ]
}"""

INTEL_MAC_TWO_GPUS = """{
  "SPDisplaysDataType" : [
    {
      "_name" : "Intel UHD Graphics 630",
      "spdisplays_automatic_graphics_switching" : "spdisplays_supported",
      "spdisplays_device-id" : "0x3e9b",
      "spdisplays_metalfamily" : "spdisplays_mtlgpufamilymac2",
      "spdisplays_vendor" : "sppci_vendor_intel",
      "sppci_bus" : "spdisplays_builtin",
      "sppci_model" : "Intel UHD Graphics 630"
    },
    {
      "_name" : "AMD Radeon Pro 5500M",
      "spdisplays_device-id" : "0x7340",
      "spdisplays_mtlgpufamilysupport" : "spdisplays_metal2",
      "spdisplays_ndrvs" : [
        {"_name" : "LG UltraFine", "_spdisplays_display-serial-number" : "10a2b3c4"}
      ],
      "spdisplays_vendor" : "sppci_vendor_amd",
      "sppci_bus" : "spdisplays_pcie_device",
      "sppci_model" : "AMD Radeon Pro 5500M"
    },
    {
      "_name" : "Headless adapter without a model or Metal field"
    }
  ]
}"""


def test_parse_system_profiler_apple_silicon():
    assert host.parse_system_profiler(APPLE_SILICON) == ["Apple M1 Pro (Metal 3)"]


def test_parse_system_profiler_intel_mac_with_two_gpus_and_no_serials():
    gpus = host.parse_system_profiler(INTEL_MAC_TWO_GPUS)
    assert gpus == [
        "Intel UHD Graphics 630 (Metal GPU family mac2)",
        "AMD Radeon Pro 5500M (Metal 2)",
        "Headless adapter without a model or Metal field",
    ]
    joined = "; ".join(gpus)
    assert "10a2b3c4" not in joined and "LG UltraFine" not in joined


@pytest.mark.parametrize(
    "metal, shown",
    [("spdisplays_supported", "Metal supported"), ("3", "Metal 3"),
     ("Supported, feature set macOS GPUFamily2 v1", "Supported, feature set macOS GPUFamily2 v1")],
)
def test_parse_system_profiler_older_metal_fields(metal, shown):
    text = json.dumps({"SPDisplaysDataType": [{"sppci_model": "Apple M3 Max", "spdisplays_metal": metal}]})
    assert host.parse_system_profiler(text) == [f"Apple M3 Max ({shown})"]


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"SPDisplaysDataType": {}}', '{"other": []}',
                                  '{"SPDisplaysDataType": [1, "x", {"sppci_model": ""}]}'])
def test_parse_system_profiler_never_raises(text):
    assert host.parse_system_profiler(text) == []
