"""The layering of DESIGN.md ("Components and layers"), checked on the source tree.

``lint-imports`` enforces the contracts in setup.cfg (``[importlinter:*]``): each layer imports
only the layers below it, and the request path (``serving``) imports nothing of the batch side.
The checker itself is shown to catch a deliberate bad import in a copy of the tree, and no two
modules import each other, directly or around a cycle (function-level imports included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twotower", "tfrs_models", "materialize", "validation", "serving")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([LINT, "--no-cache", "--config", str(root / "setup.cfg")], cwd=root, env=env,
                          capture_output=True, text=True)  # fmt: skip


def test_the_layer_contracts_hold():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    "module, bad_import, reported",
    [
        ("twotower/core/errors.py", "import twotower.pipelines.full_update", "twotower.core.errors -> twotower.pipelines.full_update"),
        ("tfrs_models/vocab.py", "from twotower.index import item_index", "tfrs_models.vocab -> twotower.index.item_index"),
        ("serving/guard.py", "import materialize.prepare", "serving.guard -> materialize.prepare"),
        ("twotower/pipelines/day.py", "from twotower.research import simulate", "twotower.pipelines.day -> twotower.research.simulate"),
    ],
)  # fmt: skip
def test_a_deliberate_bad_import_breaks_a_contract(tmp_path, module, bad_import, reported):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    with open(tmp_path / module, "a") as fh:
        fh.write(f"\n{bad_import}  # deliberate layering violation\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and reported in proc.stdout, proc.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]
