"""``Reproduce with:`` lines that reproduce: the index the run used and its resolve
cutoff (``--exclude-newer``, the as-of-release pins), so that ``uv run …`` as printed
resolves the same environment and gives the same verdict.

Pure: the commands are text built from the run's request, its index (credentials already
redacted) and the cutoff of the probe the line reproduces.
"""

from __future__ import annotations

import shlex

from envbisect.index import DEFAULT_INDEX_URL
from envbisect.plan import Cutoff


def index_args(index: dict | None) -> list[str]:
    """The index options of a run (``IndexConfig.redacted()``), omitted for the default index."""
    index = index or {}
    args = []
    if index.get("index_url") and index["index_url"].rstrip("/") != DEFAULT_INDEX_URL:
        args += ["--index-url", index["index_url"]]
    for url in index.get("extra_index_urls") or []:
        args += ["--extra-index-url", url]
    for place in index.get("find_links") or []:
        args += ["--find-links", place]
    return args


def uv_run(recipe: str, requirements: list[str], cutoff: Cutoff | None, index: dict | None) -> str:
    """``uv run`` of ``recipe`` with ``requirements`` added (``--with``), resolved under
    ``cutoff`` from the run's index: the environment of one probe, without envbisect."""
    args = ["uv", "run", *index_args(index), *(cutoff.args() if cutoff else [])]
    for req in requirements:
        args += ["--with", req]
    return " ".join(shlex.quote(a) for a in [*args, recipe])

