# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: writes a metrics file that is not JSON, then exits 0."""
import os

with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    fh.write("{max_abs_diff: 41.7")
