"""``python -m envbisect``: the same as the ``bisect`` command."""

from envbisect.reexec import harden

harden()  # before importing the CLI: a re-exec then costs no second import of it

from envbisect.cli import main  # noqa: E402

main()
