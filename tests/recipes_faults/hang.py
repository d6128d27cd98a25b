# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: hangs until killed (the runner's timeout must stop it)."""
import time

print("hanging", flush=True)
while True:
    time.sleep(60)
