# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: cannot test here (exit 125, as in git bisect run)."""
import sys

print("no GPU here", file=sys.stderr)
sys.exit(125)
