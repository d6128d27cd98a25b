# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: prints 10 MiB to stdout then a final marker line, then exits 0."""
import sys

line = b"y" * 1023 + b"\n"
for _ in range(10 * 1024):
    sys.stdout.buffer.write(line)
sys.stdout.buffer.write(b"END-OF-OUTPUT \xe2\x9c\x93\n")
sys.stdout.flush()
print("stderr marker", file=sys.stderr)
