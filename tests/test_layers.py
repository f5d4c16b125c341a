"""The import arrows point one way: foundation <- components <- pipeline/report/cli.

Checked on the source (every ``import edgeintel.x`` / ``from edgeintel.x import``,
at any depth, except under ``if TYPE_CHECKING:``), so a sideways import between
components fails here before it tangles the packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "edgeintel"
FOUNDATION = {
    "errors", "registry", "schema", "topology", "network", "data", "models", "paths", "threads",
    "extras", "onnx_files", "lazy", "latency", "limits",
}  # fmt: skip
COMPONENTS = {"training", "inference", "offloading", "caching"}
# what each layer may import (besides itself); scenario composes the components' settings
ALLOWED = {
    **{f: FOUNDATION for f in FOUNDATION},
    **{c: FOUNDATION for c in COMPONENTS},
    # offloading and caching stand on inference (ONNX Runtime timing, compressed artifacts),
    # as their issues specify; inference never imports them, so the arrows still point one way
    "offloading": FOUNDATION | {"inference"},
    "caching": FOUNDATION | {"inference"},
    # the runtime sits on top, but its settings model is a slot of the scenario
    "scenario": FOUNDATION | COMPONENTS | {"runtime", "sim"},
    # the fleet simulator sits on top beside the runtime: it drives the components' policy
    # objects (offloading costs, placement and AdaptivePolicy; cache replacement policies)
    "sim": FOUNDATION | COMPONENTS | {"scenario"},
}


def _runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "edgeintel" and len(parts) > 1:
                out.add(parts[1])
    return out


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(SRC.rglob("*.py")) if _layer(p) in ALLOWED],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_imports_point_down(path: Path) -> None:
    layer = _layer(path)
    bad = _runtime_imports(path) - ALLOWED[layer] - {layer}
    assert not bad, f"{path.relative_to(SRC)} ({layer}) imports {sorted(bad)}"
