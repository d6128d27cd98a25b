# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: alternates good and bad runs (tests --retries and flaky detection).

Counts its runs in the file named by $FLAKY_STATE: odd runs exit 0, even runs exit 1.
Without FLAKY_STATE it exits 0 or 1 at random.
"""
import os
import random
import sys

state = os.environ.get("FLAKY_STATE")
if not state:
    sys.exit(random.choice((0, 1)))
try:
    with open(state) as fh:
        count = int(fh.read() or 0)
except FileNotFoundError:
    count = 0
with open(state, "w") as fh:
    fh.write(str(count + 1))
sys.exit(count % 2)
