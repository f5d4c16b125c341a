"""Importing a scenario stays light, and the lazy package faces behave like eager ones.

Checked in fresh interpreters (``sys.modules`` after the fact): ``import edgeintel.scenario``,
``load_scenario`` of every shipped scenario and ``edgeintel --help`` load none of torch,
ONNX Runtime, scipy.stats, dp-accounting or cryptography.

What legitimately needs torch: ``edgeintel validate`` without ``--schema-only`` (preflight
runs the data stage and builds the model: a model factory is traced on the dataset's
shape), ``run``, ``train``, ``compress``, ``plan``, ``simulate`` with a model to profile,
and anything that exports or trains a model. ``serve`` and ``device`` need ONNX Runtime,
not torch.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeintel.lazy import face_table
from edgeintel.registry import Registry

HEAVY = ("torch", "onnxruntime", "scipy.stats", "dp_accounting", "cryptography")
SRC = Path(__file__).resolve().parents[1] / "src" / "edgeintel"
SCENARIOS = sorted((SRC / "scenarios").glob("*.yaml"))
FACES = sorted(
    p.parent.relative_to(SRC.parent).as_posix().replace("/", ".")
    for p in SRC.rglob("__init__.py")
    if "lazy_face(" in p.read_text(encoding="utf-8")
)


def _heavy_after(code: str) -> list[str]:
    """The heavy modules loaded in a fresh interpreter after running ``code``."""
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{code}\nimport json, sys\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_import_scenario_is_light() -> None:
    assert _heavy_after("import edgeintel.scenario") == []


def test_loading_every_shipped_scenario_is_light() -> None:
    assert len(SCENARIOS) >= 5
    code = "from edgeintel.scenario import load_scenario\n" + "".join(
        f"load_scenario({str(p)!r})\n" for p in SCENARIOS
    )
    assert _heavy_after(code) == []


def test_cli_help_is_light() -> None:
    code = (
        "import sys\nfrom edgeintel.cli import app\nsys.argv = ['edgeintel', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert _heavy_after(code) == []


def test_light_probe_sees_a_heavy_import() -> None:
    # the probe itself works: a face name that needs torch does load it
    assert "torch" in _heavy_after("from edgeintel.models import build_model")


def test_faces_found() -> None:
    for pkg in ("edgeintel.training", "edgeintel.inference", "edgeintel.caching"):
        assert pkg in FACES


@pytest.mark.parametrize("package", FACES)
def test_face_lists_what_it_exports(package: str) -> None:
    """``__all__`` and the TYPE_CHECKING table agree, and every name resolves."""
    mod = importlib.import_module(package)
    table = face_table(Path(mod.__file__ or ""))
    eager = {n for n in mod.__all__ if n in vars(mod) and n not in table}
    assert set(mod.__all__) == set(table) | eager
    for name in mod.__all__:
        assert getattr(mod, name) is not None
    assert set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


def test_face_name_wins_over_same_named_submodule() -> None:
    code = (
        "import edgeintel.training.aggregate, edgeintel.inference.compress\n"
        "import edgeintel.training as t, edgeintel.inference as i\n"
        "from edgeintel.training import aggregate\n"
        "assert callable(t.aggregate) and t.aggregate is aggregate and aggregate.__module__ "
        "== 'edgeintel.training.aggregate', t.aggregate\n"
        "assert callable(i.compress) and i.compress.__module__ == 'edgeintel.inference.compress'\n"
        "from edgeintel.inference import lowrank\n"
        "assert lowrank.__name__ == 'edgeintel.inference.lowrank'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registry_provide_imports_on_first_get() -> None:
    reg: Registry[int] = Registry("thing")
    reg.provide("json", "late")  # json registers nothing: a provided name that never appears
    assert "late" in reg and reg.names() == ["late"] and len(reg) == 1
    with pytest.raises(RuntimeError, match="does not register"):
        reg.get("late")
    with pytest.raises(ValueError, match="already registered"):
        reg.provide("json", "late")


def test_provided_models_stages_and_techniques_register() -> None:
    code = (
        "import sys\nfrom edgeintel.models.families import MODELS\n"
        "assert 'torch' not in sys.modules\n"
        "from edgeintel.pipeline.core import STAGES\n"
        "assert 'torch' not in sys.modules and 'data' in STAGES\n"
        "for n in STAGES: STAGES.get(n)\n"
        "assert not STAGES._provided\n"
        "from edgeintel.inference.base import TECHNIQUES\n"
        "assert 'resnet18' in MODELS and 'qat' in TECHNIQUES\n"
        "for n in MODELS: MODELS.get(n)\n"
        "for n in TECHNIQUES: TECHNIQUES.get(n)\n"
        "assert not MODELS._provided and not TECHNIQUES._provided"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
