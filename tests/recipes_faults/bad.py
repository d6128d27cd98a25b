# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: divergence reproduced (exit 1)."""
import sys

print("divergence reproduced", file=sys.stderr)
sys.exit(1)
