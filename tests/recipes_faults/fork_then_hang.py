# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: forks a child that hangs, records its pid, then hangs itself too.

The runner's timeout must stop both: the whole process group.
"""
import json
import os
import time

pid = os.fork()
if pid == 0:
    while True:
        time.sleep(60)
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({"child_pid": pid, "parent_pid": os.getpid()}, fh)
while True:
    time.sleep(60)
