"""envbisect: find the release that broke a numerical result.

The import package is ``envbisect``; its source root is ``bisect/`` (like ``src/``),
which is deliberately *not* a package because ``bisect`` is a standard-library module.
"""

from __future__ import annotations

__version__ = "0.1.0"
