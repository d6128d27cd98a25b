# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: an exit status that means neither good nor bad (exit 3)."""
import sys

sys.exit(3)
