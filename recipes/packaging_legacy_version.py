# /// script
# requires-python = ">=3.8"
# dependencies = ["packaging"]
# [tool.envbisect]
# package = "packaging"
# range = ">=19.0"
# timeout = 60
# ///
"""CPU demo recipe: when did ``packaging`` stop accepting non-PEP 440 versions?

``packaging.version.parse("2.0-beta-legacy")`` returned a ``LegacyVersion`` for years;
packaging 22.0 removed ``LegacyVersion`` (its changelog: "Remove LegacyVersion and
LegacySpecifier"), so the same call now raises ``InvalidVersion``. Tools that sorted
arbitrary version strings broke on that release. This recipe is good (exit 0) while the
legacy string still parses and bad (exit 1) once it raises, so ``bisect run`` on it ends
with last good 21.3, first bad 22.0, on any machine, in well under a minute.

Metrics written to ``$ENVBISECT_RESULT``: the packaging version seen and the type (or
error) that ``parse`` produced.
"""

from __future__ import annotations

import json
import os
import sys

LEGACY = "2.0-beta-legacy"


def main() -> int:
    from importlib.metadata import version

    from packaging.version import parse

    metrics = {"packaging": version("packaging"), "input": LEGACY}
    try:
        parsed = parse(LEGACY)
        metrics["parsed_as"] = type(parsed).__name__
        code = 0
    except Exception as exc:  # InvalidVersion from 22.0 on
        metrics["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    print(json.dumps(metrics))
    if os.environ.get("ENVBISECT_RESULT"):
        with open(os.environ["ENVBISECT_RESULT"], "w", encoding="utf-8") as fh:
            json.dump(metrics, fh)
    return code


if __name__ == "__main__":
    sys.exit(main())
