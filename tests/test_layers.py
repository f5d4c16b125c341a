"""The import arrows point one way, for every package and module of edgeintel:

    foundation <- components <- scenario <- sim, runtime <- report, pipeline, commands <- cli

Checked on the source (every ``import edgeintel.x`` / ``from edgeintel.x import``,
at any depth, except under ``if TYPE_CHECKING:``), so a sideways or upward import
fails here before it tangles the packages. A new top-level module or package must be
given a layer below, or the coverage test fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "edgeintel"

FOUNDATION = {
    "errors", "registry", "schema", "topology", "network", "data", "models", "paths", "threads",
    "extras", "onnx_files", "lazy", "latency", "limits", "records", "tasks", "security", "cpu",
}  # fmt: skip
COMPONENTS = {"training", "inference", "offloading", "caching", "monitoring"}
# the scenario file (schema + loading): composes the components' settings models
SCENARIO = {"scenario", "examples"}
# the two ways the components run: real processes and the fleet simulator
SYSTEMS = {"sim", "runtime"}
BELOW_TOP = FOUNDATION | COMPONENTS | SCENARIO | SYSTEMS

# what each top-level module or package may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    **{f: FOUNDATION for f in FOUNDATION},
    **{c: FOUNDATION for c in COMPONENTS},
    # offloading times real execution through inference's ONNX Runtime measurement and
    # plans over compressed artifacts; inference never imports it, so the arrow points down
    "offloading": FOUNDATION | {"inference"},
    # scenario: foundation and the settings modules of the packages above (see below)
    "scenario": FOUNDATION | COMPONENTS | SYSTEMS,
    "examples": FOUNDATION | {"scenario"},
    # the fleet simulator and the runtime drive the components' policy objects; neither
    # imports the other (the simulator's calibration reads the runtime's results JSON)
    "sim": FOUNDATION | COMPONENTS | SCENARIO,
    "runtime": FOUNDATION | COMPONENTS | SCENARIO,
    # the report renders results; the pipeline's stages and section renderers use it;
    # commands (compress, simulate back-ends) sit beside the pipeline and reuse its parts
    "report": BELOW_TOP,
    "pipeline": BELOW_TOP | {"report"},
    "commands": BELOW_TOP | {"report", "pipeline"},
    # the command line owns all typer code and sits on everything; nothing imports it
    "cli": BELOW_TOP | {"report", "pipeline", "commands"},
    # the package face re-exports the scenario API (loaded on first use)
    "__init__": FOUNDATION | SCENARIO,
    "__main__": {"cli"},
}
# packages whose settings models are slots of the scenario: scenario imports only these
SETTINGS_OF = COMPONENTS | SYSTEMS


def _runtime_imports(path: Path) -> set[str]:
    """Dotted edgeintel modules imported by ``path`` outside ``TYPE_CHECKING`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "edgeintel":  # from edgeintel import x
                out.update(f"edgeintel.{a.name}" for a in node.names)
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("edgeintel.")}


def _layer(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    missing = sorted({_layer(p) for p in SOURCES} - set(ALLOWED))
    assert not missing, f"give these a layer in tests/test_layers.py: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    layer = _layer(path)
    imported = {m.split(".")[1] for m in _runtime_imports(path)}
    bad = imported - ALLOWED.get(layer, set()) - {layer}
    assert not bad, f"{path.relative_to(SRC)} ({layer}) imports {sorted(bad)}"


def test_scenario_imports_only_foundation_and_settings_modules() -> None:
    """Loading a scenario loads the settings models, never a component's machinery."""
    for name in ("scenario.py", "examples.py"):
        bad = sorted(
            m
            for m in _runtime_imports(SRC / name)
            if m.split(".")[1] in SETTINGS_OF and not m.endswith(".settings")
        )
        assert not bad, f"{name} imports {bad}; only the */settings.py modules may be"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker sees imports in functions, and skips only TYPE_CHECKING blocks."""
    f = tmp_path / "m.py"
    f.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from edgeintel.cli import app\n"
        "def f():\n    from edgeintel.cli.common import guard\n"
        "from edgeintel import pipeline\n"
    )
    assert _runtime_imports(f) == {"edgeintel.cli.common", "edgeintel.pipeline"}
