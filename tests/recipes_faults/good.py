# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: no divergence (exit 0)."""
import sys

print("no divergence")
sys.exit(0)
