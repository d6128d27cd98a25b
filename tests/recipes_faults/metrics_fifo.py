# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: turns $ENVBISECT_RESULT into a FIFO nobody writes to, then exits 0.
A reader that opens it blocking would hang forever."""
import os

os.mkfifo(os.environ["ENVBISECT_RESULT"])
