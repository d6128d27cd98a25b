"""Output and metrics full of control characters: a colour code, "clear screen", an OSC
title and clipboard write, a bell, a C1 CSI, a right-to-left override, carriage returns."""
import json
import os
import sys

sys.stdout.write("\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x1b\\progress 1\rprogress 2\r\ndone\n")
sys.stdout.write("bell\x07 c1\x9b2J rlo\u202eevil tab\tkept\n")
sys.stderr.write("\x1b[31mFAILED\x1b[0m ValueError: boom\n")
with open(os.environ["ENVBISECT_RESULT"], "w") as fh:
    json.dump({"lo\x1b[2Jss": 1.5, "note": "x\x1b]0;pwned\x07y\u202e"}, fh)
sys.exit(1)
