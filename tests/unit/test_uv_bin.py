"""Finding uv from many threads at once (a Dask worker's first probes start side by side)."""

from __future__ import annotations

import json
import subprocess
import sys

#: A fresh interpreter (sysconfig not read yet) whose 16 threads ask for uv at once.
RACE = """
import json, threading
from envbisect.installer import uv_bin
barrier, found = threading.Barrier(16), []
def ask():
    barrier.wait()
    try:
        found.append(uv_bin())
    except Exception as exc:
        found.append(repr(exc))
threads = [threading.Thread(target=ask) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(found))
"""


def test_uv_is_found_once_whatever_the_threads():
    """Before, sysconfig's first use raced (CPython gh-92452) and most trials had threads
    fail with "can only concatenate str (not "NoneType") to str"; five fresh processes make
    a pass by luck unlikely."""
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=60, check=True)
        found = json.loads(proc.stdout)
        assert len(found) == 16 and len(set(found)) == 1 and found[0].endswith("uv"), found
