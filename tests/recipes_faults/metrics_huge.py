# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: writes a 3 MiB metrics object (over the cap), then exits 0."""
import json
import os

with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({"blob": "x" * (3 << 20)}, fh)
