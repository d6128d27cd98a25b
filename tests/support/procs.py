"""Process checks shared by tests that make sure nothing outlives a probe."""

from __future__ import annotations

import os
import time


def is_running(pid: int, *, settle_s: float = 5.0) -> bool:
    """True while ``pid`` runs, waiting up to ``settle_s`` for it to go. A zombie (killed
    but not reaped: a container's PID 1 may never reap orphans) counts as gone."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
        except OSError:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
