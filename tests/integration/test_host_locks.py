"""The host-wide locks of exclusive recipes and declared resources are shared by every
user of the machine: a worker service's user and a person running ``bisect run`` never
hold the GPU at once. Real files and a real process under another uid (when root)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from envbisect.executor import ProbeTask, host_lock_dir, host_locks

NOBODY = 65534


def _task(**kw) -> ProbeTask:
    fields = {f: None for f in ProbeTask.__dataclass_fields__}
    fields.update({"exclusive": False, "resources": {}, **kw})
    return ProbeTask(**fields)


def test_the_lock_directory_and_files_are_usable_by_every_user():
    with host_locks(_task(resources={"gpu-test": 1})):
        directory = host_lock_dir()
        mode = directory.stat().st_mode
        assert mode & stat.S_ISVTX and stat.S_IMODE(mode) & 0o777 == 0o777, oct(mode)
        assert stat.S_IMODE((directory / "gpu-test.lock").stat().st_mode) == 0o666


#: An interpreter every user may run (the test's own may live in root's home).
SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run a process as nobody")
@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="no system-wide python3 that another user can run")
def test_a_probe_of_another_user_waits_for_the_same_resource():
    # filelock's Unix lock is flock(2) on the lock file: the same call, from plain Python.
    script = ("import fcntl, os, sys\n"
              "fd = os.open(sys.argv[1], os.O_RDWR)\n"
              "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
              "except BlockingIOError:\n    sys.exit(3)\n")

    def other_user_takes_it() -> int:
        path = str(host_lock_dir() / "gpu-test.lock")
        return subprocess.run([SYSTEM_PYTHON, "-c", script, path], user=NOBODY, timeout=60, env={}).returncode

    with host_locks(_task(resources={"gpu-test": 1})):
        assert other_user_takes_it() == 3, "held by this user: another user must wait"
    assert other_user_takes_it() == 0, "released: another user (read-write on the 0666 file) takes it"
