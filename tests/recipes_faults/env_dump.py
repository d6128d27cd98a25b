# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: writes its environment, cwd and the cwd's listing to the metrics file."""
import json
import os

cwd = os.getcwd()
listing = sorted(os.listdir(cwd))
result = os.environ["ENVBISECT_RESULT"]
with open(result, "w") as fh:
    json.dump({"environ": dict(os.environ), "cwd": cwd, "listing": listing}, fh)
