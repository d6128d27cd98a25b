# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: forks a child that hangs, records its pid as a metric, then exits 0.

The runner must kill the child once this process ends. The child keeps stdout open, so
a runner reading a pipe would block here.
"""
import json
import os
import sys
import time

pid = os.fork()
if pid == 0:
    while True:
        time.sleep(60)
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({"child_pid": pid}, fh)
print("parent done", flush=True)
sys.exit(0)
