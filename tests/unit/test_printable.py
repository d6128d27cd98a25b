"""What a recipe printed, made safe to show (envbisect.printable, and the installer reasons
that quote an index): pure, no processes."""

from __future__ import annotations

import pytest

from envbisect.installer import install_reason
from envbisect.printable import printable, printable_json


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[31mFAILED\x1b[0m ok", "FAILED ok"),                      # colour
    ("\x1b[2J\x1b[Hclear", "clear"),                                 # clear screen, cursor home
    ("\x1b]0;pwned\x07title", "title"),                              # OSC ended by BEL
    ("\x1b]52;c;ZXZpbA==\x1b\\clip", "clip"),                        # OSC 52 (clipboard) ended by ST
    ("cut \x1b]0;x", "cut "),                                        # an OSC never ended
    ("a\rb\r\nc", "a\nb\nc"),                                        # carriage returns
    ("bell\x07 nul\x00 del\x7f c1\x9b", "bell\\x07 nul\\x00 del\\x7f c1\\x9b"),
    ("rlo\u202eevil lri\u2066x\u2069", "rlo\\u202eevil lri\\u2066x\\u2069"),
    ("tab\tand\nnewline, caf\u00e9 \u2713", "tab\tand\nnewline, caf\u00e9 \u2713"),  # kept
])
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_json_cleans_names_and_strings_and_keeps_numbers() -> None:
    assert printable_json({"lo\x1b[2Jss": 1.5, "n": {"k\u202e": ["a\x07", 2, None, True]}}) == \
        {"loss": 1.5, "n": {"k\\u202e": ["a\\x07", 2, None, True]}}


def test_an_installer_message_is_kept_printable() -> None:
    """An install failure's reason quotes uv, which may quote what an index served (a
    project name, a metadata line): shown in `show`, reports and comments, no control
    character of it acts."""
    stderr = ("Using CPython 3.11\n  x No solution found when resolving dependencies:\n"
              "  `-> Because evil\x1b]52;c;ZXZpbA==\x07 depends on a\u202eb\x1b[2J and you require evil, fail.\n")
    assert install_reason(stderr) == ("x No solution found when resolving dependencies: `-> Because evil "
                                      "depends on a\\u202eb and you require evil, fail.")
