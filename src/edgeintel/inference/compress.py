"""The ``compress`` verb: run a recipe on a model and measure every stage honestly.

``compress(model, recipe, train_data, calib_data)`` exports the fp32 baseline,
applies each step in order (torch steps on the module, then an ONNX step on the
exported graph), exports and measures after every step, and returns a
``CompressionResult`` with per-stage measurements, warnings naming the layers a
technique left unchanged, and the final ONNX artifact. Intermediate results are
shared through ``cache`` when many recipes with common prefixes run (search).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ConfigError, ModelError
from edgeintel.inference.base import (
    TECHNIQUES,
    ArrayData,
    CompressContext,
    Finetuner,
    StageKind,
    TorchStage,
    as_array_data,
    check_samples,
)
from edgeintel.inference.measure import MeasureConfig, Measurement, load_onnx, measure_onnx
from edgeintel.inference.recipe import Recipe, make_recipe
from edgeintel.models.export import ModelArtifact, export_onnx
from edgeintel.onnx_files import file_sha256
from edgeintel.tasks import TaskKind, make_task

__all__ = ["CompressionResult", "StageResult", "compress"]


@dataclass(frozen=True)
class StageResult:
    """The model after one step (``technique`` is ``fp32`` for the baseline)."""

    technique: str
    label: str
    options: dict[str, Any]
    onnx_path: str
    measurement: Measurement
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "label": self.label,
            "options": self.options,
            "onnx_path": self.onnx_path,
            "measurement": self.measurement.to_json(),
            "warnings": self.warnings,
            "info": _json_safe(self.info),
        }


@dataclass
class CompressionResult:
    """Per-stage measurements (``stages[0]`` is the fp32 baseline) and the final artifact."""

    recipe: Recipe
    stages: list[StageResult]
    artifact: ModelArtifact
    model: nn.Module | None = None
    # the PyTorch model after the recipe's last torch-level step (the input model when it has
    # none; None for an ONNX input): runtimes that export from PyTorch start here
    torch_model: nn.Module | None = None

    @property
    def baseline(self) -> Measurement:
        return self.stages[0].measurement

    @property
    def final(self) -> Measurement:
        return self.stages[-1].measurement

    @property
    def warnings(self) -> list[str]:
        return [f"{s.technique}: {w}" for s in self.stages for w in s.warnings]

    def ratios(self) -> dict[str, float]:
        """Final vs baseline: size/latency ratios (>1 = smaller/faster) and the drop of the
        task kind's headline metric in its unit (``metric_drop`` > 0: worse; accuracy 0.01 =
        one point)."""
        b, f = self.baseline, self.final
        return {
            "size_ratio": b.onnx_bytes / f.onnx_bytes,
            "p50_speedup": b.latency.p50_ms / f.latency.p50_ms,
            "macs_ratio": b.macs / max(f.macs, 1),
            "metric_drop": f.drop_from(b),
        }

    def summary_json(self) -> dict[str, Any]:
        """The compact record of a search candidate: recipe, ratios, final measurement."""
        return {
            "label": self.recipe.name,
            "recipe": self.recipe.to_json(),
            "ratios": self.ratios(),
            "measurement": self.final.to_json(),
            "warnings": self.warnings,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_json(),
            "label": self.recipe.label(),
            "stages": [s.to_json() for s in self.stages],
            "ratios": self.ratios(),
            "artifact": self.artifact.to_json(),
            "warnings": self.warnings,
        }


def _headline(m: Measurement) -> dict[str, float]:
    """The headline metric under its name, for an artifact's record (``{"accuracy": 0.97}``)."""
    return {m.metric: m.metric_value}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: str(o)))


@dataclass
class _Node:
    """A cached intermediate: the torch model (None after an ONNX step) and its stage."""

    model: nn.Module | None
    stage: StageResult


def _key(steps: list[dict[str, Any]]) -> str:
    return hashlib.sha1(json.dumps(steps, sort_keys=True).encode()).hexdigest()[:10]


def _holdout(data: ArrayData, seed: int) -> tuple[ArrayData, ArrayData]:
    """20% held out: stratified by label, or at random for real-valued targets."""
    from edgeintel.data.partition import train_test_split

    if np.issubdtype(data.y.dtype, np.floating):
        order = np.random.default_rng(seed).permutation(len(data.y))
        k = max(1, round(0.2 * len(order)))
        tr, te = np.sort(order[k:]), np.sort(order[:k])
    else:
        tr, te = train_test_split(data.y, 0.2, seed=seed)
    return ArrayData(data.x[tr], data.y[tr]), ArrayData(data.x[te], data.y[te])


def compress(
    model: nn.Module | str | Path,
    recipe: Recipe | list[Any],
    train_data: Any,
    calib_data: Any = None,
    *,
    eval_data: Any = None,
    labels: list[str] | None = None,
    family: str | None = None,
    width: int | None = None,
    workdir: str | Path | None = None,
    measure: MeasureConfig | None = None,
    seed: int = 0,
    cache: dict[str, Any] | None = None,
    finetuner: Finetuner | None = None,
    task: TaskKind | None = None,
) -> CompressionResult:
    """Run ``recipe`` on ``model`` (a PyTorch module or an ONNX file) and measure each stage.

    ``train_data`` (a Dataset or ``(x, y)``) fine-tunes and distills; ``calib_data``
    (samples, or a Dataset) calibrates static quantization (default: the training
    samples); ``eval_data`` is the held-out set for accuracy (default: a stratified
    20% of ``train_data`` kept out of training). ``family``/``width`` name the zoo
    model, used by distillation's default student. ``finetuner`` replaces central
    fine-tuning (see ``CompressContext.finetuner``). ``task`` is the task kind (``None``:
    classification): fine-tuning and distillation minimise its loss, every stage is measured
    by its metrics, and ``train_data``'s targets are its targets (labels, values).
    """
    kind = task if task is not None else make_task("classification")
    if not isinstance(recipe, Recipe):
        recipe = make_recipe("recipe", list(recipe))
    mcfg = measure or MeasureConfig()
    wd = (
        Path(workdir)
        if workdir is not None
        else Path(tempfile.mkdtemp(prefix="edgeintel-compress-"))
    )
    wd.mkdir(parents=True, exist_ok=True)

    onnx_src: Path | None = None
    if isinstance(model, str | Path):
        onnx_src = Path(model)
        proto = load_onnx(onnx_src)
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        input_shape = tuple(int(d.dim_value) for d in dims[1:])
        if recipe.torch_steps:
            raise ConfigError(
                f"recipe {recipe.name!r}: {recipe.torch_steps[0].technique} works on a PyTorch "
                f"model, but {onnx_src} is an ONNX file; only "
                f"{', '.join(n for n in TECHNIQUES if TECHNIQUES.get(n).kind == StageKind.ONNX)} "
                "apply to it"
            )
        torch_model: nn.Module | None = None
    elif isinstance(model, nn.Module):
        torch_model = model
        x0 = getattr(train_data, "x", None)
        if x0 is None and isinstance(train_data, tuple):
            x0 = train_data[0]
        if not isinstance(x0, np.ndarray) or x0.ndim < 2:
            raise ConfigError("train_data: expected a Dataset or an (x, y) pair of arrays")
        input_shape = tuple(int(d) for d in x0.shape[1:])
    else:
        raise ModelError(
            f"model: expected a torch.nn.Module or an ONNX file path, got {type(model).__name__}"
        )

    train = as_array_data(train_data, input_shape, "train_data", kind)
    if eval_data is None:
        train, held = _holdout(train, seed)
    else:
        held = as_array_data(eval_data, input_shape, "eval_data", kind)
    if calib_data is None:
        calib_x = train.x
    else:
        cx = (
            calib_data
            if isinstance(calib_data, np.ndarray)
            else getattr(calib_data, "x", calib_data)
        )
        calib_x = check_samples(cx, input_shape, "calibration data")

    if torch_model is not None:
        torch_model.eval()
        with torch.no_grad():
            out = torch_model(torch.from_numpy(held.x[:2]))
        num_classes = int(out.shape[1])
    else:
        from edgeintel.onnx_files import make_session, onnx_predict

        assert onnx_src is not None
        num_classes = int(onnx_predict(make_session(onnx_src), held.x[:2]).shape[1])
    labels = labels or [str(i) for i in range(num_classes)]
    ctx = CompressContext(
        input_shape=input_shape,
        num_classes=num_classes,
        labels=labels,
        train=train,
        calib_x=calib_x,
        workdir=wd,
        seed=seed,
        teacher=torch_model,
        family=family,
        width=width,
        finetuner=finetuner,
        task=kind,
    )
    cache = cache if cache is not None else {}

    def export(m: nn.Module, name: str) -> Path:
        art = export_onnx(m, input_shape, wd / f"{name}.onnx", labels)
        return Path(art.path)

    # baseline
    prefix: list[dict[str, Any]] = []
    base_key = _key(prefix)
    if base_key not in cache:
        if torch_model is not None:
            path = export(torch_model, "fp32")
        else:
            assert onnx_src is not None
            # a copy in the work folder: the metadata written beside the final artifact
            # must never overwrite the record beside the user's input model
            path = wd / "fp32.onnx"
            if path.resolve() != onnx_src.resolve():
                shutil.copyfile(onnx_src, path)
        meas = measure_onnx(path, held.x, held.y, mcfg, kind)
        cache[base_key] = _Node(torch_model, StageResult("fp32", "fp32", {}, str(path), meas))
    node: _Node = cache[base_key]
    stages = [node.stage]
    last_torch = node.model
    for step in recipe.steps:
        prefix.append(step.to_json())
        key = _key(prefix)
        if key not in cache:
            spec = TECHNIQUES.get(step.technique)
            name = "_".join(s for s in [*(next(iter(p)) for p in prefix)][-2:]) + f"_{key}"
            info: dict[str, Any] = {}
            if spec.kind == StageKind.TORCH:
                assert node.model is not None
                res: TorchStage = spec.fn(node.model, step.config, ctx)
                new_model: nn.Module | None = res.model
                path = export(res.model, name)
                warns, info = res.warnings, res.info
            else:
                path = wd / f"{name}.onnx"
                warns = spec.fn(Path(node.stage.onnx_path), step.config, ctx, path)
                new_model = None
            meas = measure_onnx(path, held.x, held.y, mcfg, kind)
            stage = StageResult(
                step.technique, step.label(), step.options(), str(path), meas, warns, info
            )
            cache[key] = _Node(new_model, stage)
        node = cache[key]
        stages.append(node.stage)
        last_torch = node.model if node.model is not None else last_torch
    final = Path(stages[-1].onnx_path)
    graph = load_onnx(final).graph
    artifact = ModelArtifact(
        path=str(final),
        input_name=graph.input[0].name,
        input_shape=list(input_shape),
        output_name=graph.output[0].name,
        labels=labels,
        sha256=file_sha256(final),
        bytes=final.stat().st_size,
        extra={"recipe": recipe.to_json(), **_headline(stages[-1].measurement)},
    )
    artifact.save()
    return CompressionResult(recipe, stages, artifact, node.model, last_torch)
