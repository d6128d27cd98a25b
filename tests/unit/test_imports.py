"""The import graph of ``envbisect`` has no cycles, and the layers of DESIGN.md hold.

Every ``import envbisect.X`` / ``from envbisect.X import`` / ``from envbisect import X``
is counted, including imports inside functions (a lazy import is still a dependency; it
only hides the cycle from the interpreter). No subprocess, no I/O beyond reading sources.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import envbisect

PACKAGE = Path(envbisect.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))

#: Modules of the pure core: decisions only, no I/O, nothing above them.
PURE_CORE = {"search", "midpoints", "policy", "culprits", "sourcerange", "sampling", "knobsearch", "compare",
             "signatures", "verdicts", "watchplan"}
#: The probe layer may not reach up into the runs, records' renderers, daemon or interface.
ABOVE_PROBES = {"driver", "byversion", "bydate", "matrix", "nightly_runs", "checks", "watch", "cli",
                "cli_matrix", "cli_watch", "cli_options", "cli_records", "report", "report_matrix", "report_parts",
                "report_chart", "report_html", "trackers"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "envbisect":
                found |= {a.name for a in node.names if a.name in MODULES}
            elif node.module.startswith("envbisect."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("envbisect.")}
    return found - {module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_import_graph_has_no_cycles() -> None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        for dep in sorted(GRAPH.get(module, ())):
            visit(dep, [*path, module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


@pytest.mark.parametrize("module", sorted(PURE_CORE))
def test_the_pure_core_imports_nothing_that_does_io(module: str) -> None:
    allowed = PURE_CORE | {"errors", "runner"}  # policy judges the runner's RawResult type
    assert GRAPH[module] <= allowed, GRAPH[module] - allowed


@pytest.mark.parametrize("module", ["session", "envs", "envcache", "plan", "installer", "runner", "probetree", "metrics", "procs",
                                    "host", "index", "sourceprobe", "sourcescan", "plainfile"])
def test_the_probe_layer_never_imports_the_layers_above(module: str) -> None:
    assert not GRAPH[module] & ABOVE_PROBES, GRAPH[module] & ABOVE_PROBES


def test_the_source_scan_runs_in_any_env_interpreter() -> None:
    """sourcescan's text is also run by a candidate env's own Python (3.8 or later, nothing
    but the standard library): it imports no envbisect module and nothing from outside the
    standard library, in a syntax Python 3.8 parses."""
    tree = ast.parse((PACKAGE / "sourcescan.py").read_text(), feature_version=(3, 8))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names), names


def test_only_the_store_imports_sqlite_utils() -> None:
    users = [m for m in MODULES if "sqlite_utils" in (PACKAGE / f"{m}.py").read_text()]
    assert users == ["store"]
