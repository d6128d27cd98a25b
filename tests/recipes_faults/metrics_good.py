# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: writes a valid metrics object and reports a divergence (exit 1)."""
import json
import os
import sys

with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({"max_abs_diff": 41.7, "device": "GPU:0", "nested": {"rel": 0.5}}, fh)
sys.exit(1)
