# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: ignores SIGTERM and hangs (only SIGKILL after the grace period stops it)."""
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(60)
