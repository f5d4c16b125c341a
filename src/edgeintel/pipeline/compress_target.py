"""What ``edgeintel compress MODEL_OR_SCENARIO --device PROFILE`` does (the CLI only prints).

A scenario file gives the data, the model (trained here with the scenario's
training settings) and the device profiles with their budgets; an ONNX file
needs ``dataset`` and gets the ONNX-level recipes (quantization) only, judged
for a device of ``compute_speed``. Outputs in ``out_dir``: ``<profile>.onnx``
(+ ``.json`` metadata), ``search.json``, ``pareto_<profile>.png`` and
``report.html`` (the compression report section with its Pareto plots).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeintel.errors import ConfigError, ModelError
from edgeintel.inference.compress import CompressionResult
from edgeintel.inference.devices import (
    ProfileChoice,
    choose_for_profiles,
    front_rows,
    pareto_figure,
    search_space_for,
)
from edgeintel.inference.measure import MeasureConfig, load_onnx
from edgeintel.inference.recipe import Recipe, load_recipe, make_recipe
from edgeintel.inference.search import run_candidates
from edgeintel.inference.settings import CompressBudget, CompressSettings
from edgeintel.topology import DeviceProfile

__all__ = ["CompressOutcome", "compress_target"]


@dataclass
class CompressOutcome:
    """Candidates measured once and the choice for each device profile."""

    results: list[CompressionResult]
    choices: dict[str, ProfileChoice]
    out_dir: Path
    report_path: Path

    def rows(self, profile: str) -> list[dict[str, Any]]:
        return front_rows(self.choices[profile].search)


def _overrides(
    settings: CompressSettings,
    space: str | None,
    objective: str | None,
    max_latency_ms: float | None,
    max_kb: float | None,
    min_accuracy: float | None,
) -> CompressSettings:
    upd: dict[str, Any] = {}
    if space is not None:
        upd["search_space"] = space
    if objective is not None:
        upd["objective"] = objective
    limits = {
        k: v
        for k, v in {
            "max_latency_ms": max_latency_ms,
            "max_model_kb": max_kb,
            "min_accuracy": min_accuracy,
        }.items()
        if v is not None
    }
    try:
        if limits:  # command-line limits apply to every profile
            upd["budget"] = CompressBudget.model_validate(
                {**settings.budget.model_dump(), **limits}
            )
            upd["budgets"] = {
                k: CompressBudget.model_validate({**b.model_dump(), **limits})
                for k, b in settings.budgets.items()
            }
        return CompressSettings.model_validate({**settings.model_dump(), **upd})
    except Exception as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"compress options: {first[-1].strip() if first else exc}") from None


def _from_run(run_dir: Path) -> tuple[Any, Any, Any, Any, dict[str, DeviceProfile], Any]:
    """Model, dataset, train/test indices, profiles and settings of a finished run folder."""
    import numpy as np

    from edgeintel.data import load_data, train_test_split
    from edgeintel.scenario import parse_scenario

    for name in ("scenario.json", "model.onnx"):
        if not (run_dir / name).is_file():
            raise ConfigError(
                f"--from-run {run_dir}: no {name}; expected a run folder of `edgeintel run` "
                "or `edgeintel train`"
            )
    try:
        raw = json.loads((run_dir / "scenario.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{run_dir / 'scenario.json'}: not valid JSON ({exc})") from None
    sc = parse_scenario(raw, base_dir=run_dir, source=str(run_dir / "scenario.json"))
    load_onnx(run_dir / "model.onnx")
    ds = load_data(sc.data, seed=sc.seed)
    split = run_dir / "split.npz"
    if split.is_file():  # the run's own held-out split
        with np.load(split) as z:
            tr, te = z["train_idx"], z["test_idx"]
        if max(int(tr.max(initial=0)), int(te.max(initial=0))) >= len(ds.y):
            raise ConfigError(f"{split}: indices beyond the {len(ds.y)} samples of {ds.name}")
    else:
        tr, te = train_test_split(ds.y, sc.data.test_fraction, seed=sc.seed)
    return (
        run_dir / "model.onnx",
        ds,
        tr,
        te,
        dict(sc.device_profiles),
        sc.settings.inference.compress,
    )


def compress_target(
    target: str | Path,
    devices: list[str] | None = None,
    *,
    dataset: str | None = None,
    recipes: list[str | Path] | None = None,
    space: str | None = None,
    objective: str | None = None,
    max_latency_ms: float | None = None,
    max_kb: float | None = None,
    min_accuracy: float | None = None,
    compute_speed: float = 1.0,
    out_dir: str | Path = "compressed",
    runs: int = 100,
    seed: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> CompressOutcome:
    """Compress a scenario's model, an ONNX file or a run folder's model for device profiles.

    A run folder (``runs/<id>``) gives its exported ``model.onnx`` (ONNX-level
    recipes only), its scenario's device profiles and budgets, and the run's
    own held-out split (``split.npz``), so the verdicts use the same test data.
    See the module docstring for the other targets.
    """
    from edgeintel.data import load_data, load_dataset, train_test_split
    from edgeintel.scenario import load_scenario

    say = on_step or (lambda _msg: None)
    path = Path(target)
    out = Path(out_dir)
    recipe_list: list[Recipe] = [load_recipe(r) for r in recipes or []]
    suffix = path.suffix.lower()
    family = width = None
    model: Any
    if path.is_dir():  # a run folder: its exported model, scenario and held-out split
        model, ds, tr, te, profiles, settings = _from_run(path)
        if seed is None:
            seed = int(json.loads((path / "scenario.json").read_text()).get("seed", 0))
        path = path / "model.onnx"
        onnx_only = True
    elif suffix in (".yaml", ".yml"):
        from edgeintel.models import build_model
        from edgeintel.models.train import TrainConfig, train_model

        sc = load_scenario(path)
        seed = sc.seed if seed is None else seed
        ds = load_data(sc.data, seed=seed)
        tr, te = train_test_split(ds.y, sc.data.test_fraction, seed=seed)
        t = sc.settings.training
        family, width = sc.task.model, sc.task.width
        model = build_model(family, ds.sample_shape, ds.num_classes, width=width, seed=seed)
        say(f"training {family} (width {width}) on {ds.name} for {t.epochs} epochs")
        train_model(
            model,
            ds.x[tr],
            ds.y[tr],
            TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr),
            seed=seed,
        )
        profiles = dict(sc.device_profiles)
        settings = sc.settings.inference.compress
        onnx_only = False
    elif suffix == ".onnx":
        load_onnx(path)  # missing or corrupt file -> ModelError
        if dataset is None:
            raise ConfigError("--dataset: an ONNX model needs a bundled dataset to calibrate on")
        seed = 0 if seed is None else seed
        ds = load_dataset(dataset)
        tr, te = train_test_split(ds.y, 0.25, seed=seed)
        model = path
        name = (devices or ["device"])[0]
        if not compute_speed > 0:
            raise ConfigError(f"--compute-speed must be > 0, got {compute_speed}")
        profiles = {
            name: DeviceProfile(
                compute_speed=compute_speed,
                memory_mb=1e6,
                power_compute_w=0,
                power_tx_w=0,
                power_idle_w=0,
                battery_j=1,
            )
        }
        devices = [name]
        settings = CompressSettings()
        onnx_only = True
    else:
        if not path.exists():
            raise ModelError(f"model or scenario file not found: {path}")
        raise ModelError(f"{path}: expected a scenario (.yaml) or an ONNX model (.onnx)")
    if devices:
        unknown = [d for d in devices if d not in profiles]
        if unknown:
            raise ConfigError(
                f"--device {unknown[0]!r}: unknown device profile; expected one of: "
                f"{', '.join(sorted(profiles))}"
            )
        profiles = {d: profiles[d] for d in devices}
    settings = _overrides(settings, space, objective, max_latency_ms, max_kb, min_accuracy)
    if recipe_list:
        if not any(not r.steps for r in recipe_list):
            recipe_list.insert(0, make_recipe("fp32", []))
        space_list = recipe_list
    else:
        space_list = search_space_for(settings, onnx_only=onnx_only)
    say(f"measuring {len(space_list)} candidates")
    results = run_candidates(
        model,
        space_list,
        (ds.x[tr], ds.y[tr]),
        ds.x[tr][:256],
        eval_data=(ds.x[te], ds.y[te]),
        measure=MeasureConfig(runs=runs, warmup=max(1, runs // 10)),
        labels=ds.classes,
        family=family,
        width=width,
        workdir=out / "candidates",
        seed=seed,
    )
    choices = choose_for_profiles(results, profiles, settings, out)
    from edgeintel.pipeline import data_section as _data_section  # noqa: F401  (registers sections)
    from edgeintel.pipeline import inference_section as _section  # noqa: F401
    from edgeintel.report import Figure, machine_info, package_versions, write_report
    from edgeintel.report.figures import png_base64

    figures = []
    for name, ch in choices.items():
        b64 = png_base64(pareto_figure(ch.search, f"{path.name}: candidates on {name}"))
        (out / f"pareto_{name}.png").write_bytes(base64.b64decode(b64))
        figures.append(
            Figure(
                "compression",
                f"Pareto front for {name}",
                b64,
                f"Held-out accuracy vs latency on {name} (this machine's ONNX Runtime "
                f"p50 / compute speed {profiles[name].compute_speed:g}); marker area ~ ONNX "
                "size, green = meets the budget, black edge = Pareto front, red ring = chosen.",
            )
        )
    section = {
        "target": str(path),
        "dataset": ds.name,
        "per_profile": {
            k: {**v.to_json(), "table": front_rows(v.search)} for k, v in choices.items()
        },
        "candidates": [r.summary_json() for r in results],
    }
    (out / "search.json").write_text(json.dumps(section, indent=2, default=str))
    page = {
        "title": f"edgeintel compress — {path.name}",
        "subtitle": f"Compression recipes searched for {', '.join(profiles)} on {ds.name}.",
        "run_id": out.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "completed",
        "error": None,
        "data": {
            "name": ds.name,
            "samples": len(ds.y),
            "classes": list(ds.classes),
            "train_samples": len(tr),
            "test_samples": len(te),
        },
        "compression": section,
        "machine": machine_info(),
        "versions": package_versions(),
    }
    report = write_report(out / "report.html", page, figures)
    return CompressOutcome(results, choices, out, report)
