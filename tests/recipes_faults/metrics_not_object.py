# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: writes a JSON list instead of an object, then exits 0."""
import json
import os

with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump([41.7, 0.0], fh)
