"""``python -m envbisect``: the same as the ``bisect`` command."""

from envbisect.cli import main

main()
