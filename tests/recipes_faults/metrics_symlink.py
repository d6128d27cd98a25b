# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: points $ENVBISECT_RESULT at another file through a symlink, exits 0."""
import os

target = os.path.join(os.path.dirname(os.environ["ENVBISECT_RESULT"]), "elsewhere.json")
with open(target, "w") as fh:
    fh.write('{"max_abs_diff": 0.0}')
os.symlink(target, os.environ["ENVBISECT_RESULT"])
