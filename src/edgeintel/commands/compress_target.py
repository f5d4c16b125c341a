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
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeintel.errors import ConfigError, ModelError
from edgeintel.inference.compress import CompressionResult
from edgeintel.inference.devices import (
    ProfileChoice,
    calibration_free,
    choose_for_profiles,
    front_rows,
    onnx_metric,
    pareto_figure,
    search_space_for,
)
from edgeintel.inference.measure import MeasureConfig, load_onnx
from edgeintel.inference.recipe import Recipe, load_recipe, make_recipe
from edgeintel.inference.search import run_candidates
from edgeintel.inference.settings import CompressBudget, CompressSettings
from edgeintel.paths import check_new_out_dir, inside, safe_name
from edgeintel.tasks import TaskKind
from edgeintel.topology import DeviceProfile

__all__ = ["CompressOutcome", "compress_target", "recorded_split", "recorded_task"]


@dataclass
class CompressOutcome:
    """Candidates measured once and the choice for each device profile."""

    results: list[CompressionResult]
    choices: dict[str, ProfileChoice]
    out_dir: Path
    report_path: Path

    def rows(self, profile: str) -> list[dict[str, Any]]:
        return front_rows(self.choices[profile].search)


_OPTION_OF = {
    "search_space": "--space",
    "objective": "--objective",
    "max_latency_ms": "--max-latency-ms",
    "max_model_kb": "--max-kb",
    "min_accuracy": "--min-accuracy",
    "max_metric_drop": "--max-metric-drop",
}


def _overrides(
    settings: CompressSettings,
    space: str | None,
    objective: str | None,
    max_latency_ms: float | None,
    max_kb: float | None,
    min_accuracy: float | None,
    max_metric_drop: float | None = None,
) -> CompressSettings:
    """``settings`` with the command-line options applied; a bad option is a one-line
    ``ConfigError`` naming the option and the values it accepts."""
    from pydantic import ValidationError

    choices = {
        "--space": ("quick", "default"),
        "--objective": ("metric", "accuracy", "latency", "size"),
    }
    for option, text in (("--space", space), ("--objective", objective)):
        if text is not None and text not in choices[option]:
            raise ConfigError(
                f"{option}: expected one of {', '.join(choices[option])}, got {text!r}"
            )
    limits: dict[str, float] = {
        k: v
        for k, v in {
            "max_latency_ms": max_latency_ms,
            "max_model_kb": max_kb,
            "min_accuracy": min_accuracy,
            "max_metric_drop": max_metric_drop,
        }.items()
        if v is not None
    }
    for key, value in limits.items():
        option = _OPTION_OF[key]
        if not math.isfinite(value):
            raise ConfigError(f"{option}: expected a finite number, got {value}")
        if key == "min_accuracy" and not 0 <= value <= 1:
            raise ConfigError(f"{option}: expected an accuracy in [0, 1], got {value}")
        if key == "max_metric_drop" and not value >= 0:
            raise ConfigError(f"{option}: expected a drop >= 0 in the metric's unit, got {value}")
        if key not in ("min_accuracy", "max_metric_drop") and not value > 0:
            raise ConfigError(f"{option}: expected a number > 0, got {value}")
    upd: dict[str, Any] = {}
    if space is not None:
        upd["search_space"] = space
    if objective is not None:
        upd["objective"] = objective
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
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][-1]) if err["loc"] else "compress"
        msg = str(err["msg"])
        raise ConfigError(f"{_OPTION_OF.get(field, field)}: {msg[:1].lower()}{msg[1:]}") from None


def _check_devices(devices: list[str] | None, profiles: dict[str, Any]) -> None:
    for d in devices or []:
        if d not in profiles:
            raise ConfigError(
                f"--device {d!r}: unknown device profile; expected one of: "
                f"{', '.join(sorted(profiles))}"
            )


def _single_profile(
    devices: list[str] | None, compute_speed: float
) -> tuple[dict[str, DeviceProfile], CompressSettings, list[str]]:
    """One device profile of the given compute speed for a bare ONNX model."""
    name = (devices or ["device"])[0]
    if not isinstance(compute_speed, int | float) or not (
        math.isfinite(compute_speed) and compute_speed > 0
    ):
        raise ConfigError(f"--compute-speed: expected a finite number > 0, got {compute_speed}")
    profile = DeviceProfile(
        compute_speed=compute_speed,
        memory_mb=1e6,
        power_compute_w=0,
        power_tx_w=0,
        power_idle_w=0,
        battery_j=1,
    )
    return {name: profile}, CompressSettings(), [name]


def _from_run(run_dir: Path) -> tuple[Path, dict[str, DeviceProfile], Any, int, TaskKind]:
    """The exported model, device profiles, compression settings, seed and task kind (with
    what the run fitted on validation, from ``model.json``; else the scenario's) of a
    finished run folder, every file read through the checked loader (``edgeintel.records``)."""
    from edgeintel.records import open_run
    from edgeintel.scenario import parse_scenario

    run = open_run(run_dir, "--from-run")
    raw = run.scenario()
    artifact = run.model()
    sc = parse_scenario(raw.data, base_dir=run_dir, source=str(raw.source))
    path = Path(artifact.path)
    kind = recorded_task(path) or sc.task.task_kind()
    if kind.name != sc.task.kind:
        raise ConfigError(
            f"{path.with_suffix('.json')}: extra.task: the model was trained for the "
            f"{kind.name!r} task kind, but the run's scenario names {sc.task.kind!r}"
        )
    return path, dict(sc.device_profiles), sc.settings.inference.compress, sc.seed, kind


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
    overwrite: bool = False,
    max_metric_drop: float | None = None,
) -> CompressOutcome:
    """Compress a scenario's model, an ONNX file or a run folder's model for device profiles.

    A run folder (``runs/<id>``) gives its exported ``model.onnx`` (ONNX-level
    recipes only, on the split recorded in its ``model.json``) and its scenario's
    device profiles and budgets. See the module docstring for the other targets.
    Every option, the device names and the data are checked before any training;
    an ``out_dir`` holding earlier files is refused unless ``overwrite``.
    """
    from edgeintel.paths import removed_on_failure

    out = check_new_out_dir(out_dir, "--out", overwrite)
    with removed_on_failure(out):  # a refused or failed search leaves no folder behind
        from edgeintel.data import DATASETS
        from edgeintel.data.device_data import derive_run_data
        from edgeintel.scenario import load_scenario

        say = on_step or (lambda _msg: None)
        path = Path(target)

        def with_options(base: CompressSettings) -> CompressSettings:
            """``base`` with the command-line options applied (checked)."""
            return _overrides(
                base, space, objective, max_latency_ms, max_kb, min_accuracy, max_metric_drop
            )

        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 5:
            raise ConfigError(f"--runs: expected an integer >= 5 timed runs, got {runs!r}")
        if seed is not None and not 0 <= seed < 2**32:
            raise ConfigError(f"seed: expected an integer in [0, 2**32), got {seed}")
        for d in devices or []:
            safe_name(d, "--device")
        recipe_list: list[Recipe] = [load_recipe(r) for r in recipes or []]
        suffix = path.suffix.lower()
        family = width = None
        fit_x = fit_y = None
        kind: TaskKind | None = None  # an ONNX model without a task record: a classifier
        model: Any
        run_profiles: dict[str, DeviceProfile] | None = None
        if path.is_dir():  # a run folder: its exported model (with its split record) and profiles
            if out.resolve() == path.resolve():
                raise ConfigError(
                    f"--out {out}: is the run folder given by --from-run; its report.html and "
                    "results would be replaced; choose another folder"
                )
            path, run_profiles, run_settings, run_seed, kind = _from_run(path)
            seed = run_seed if seed is None else seed
            suffix = ".onnx"
        if suffix in (".yaml", ".yml"):
            from edgeintel.models import build_model
            from edgeintel.models.train import train_model
            from edgeintel.pipeline.preflight import preflight
            from edgeintel.threads import DEFAULT_THREADS

            sc = load_scenario(path)
            if dataset is not None:
                raise ConfigError("--dataset: only for an ONNX model; a scenario names its data")
            profiles = dict(sc.device_profiles)
            _check_devices(devices, profiles)
            settings = with_options(sc.settings.inference.compress)
            search_space_for(settings)  # recipe options of the space are valid
            seed = sc.seed if seed is None else seed
            sc = sc.model_copy(update={"seed": seed})
            preflight(sc, ["data", "train", "compress"], scenario_file=str(path))
            # trained centrally here: preprocessing fitted on its own training split
            rd = derive_run_data(sc.data, seed, edge=False, kind=sc.task.kind)
            ds, sp = rd.dataset, rd.splits
            tr, val, te = sp.train, sp.val, sp.test
            t = sc.settings.training
            family, width = sc.task.model, sc.task.width
            kind = sc.task.task_kind()
            outputs = kind.outputs(ds.num_classes, ds.sample_shape)
            model = build_model(family, ds.sample_shape, outputs, width=width, seed=seed)
            say(f"training {family} (width {width}) on {ds.name} for {t.epochs} epochs")
            train_model(
                model,
                ds.x[tr],
                ds.y[tr],
                t.central_config(threads=DEFAULT_THREADS),
                seed=seed,
                task=kind,
            )
            fit_x, fit_y = ds.x[tr], ds.y[tr]  # trained centrally here: its own training split
            onnx_only = False
        elif suffix == ".onnx":
            if run_profiles is not None:
                _check_devices(devices, run_profiles)
                profiles = run_profiles
                settings = with_options(run_settings)
            else:
                if devices and len(devices) > 1:
                    raise ConfigError(
                        "--device: an ONNX model is judged for one device (named by --device and "
                        f"--compute-speed); got {len(devices)}"
                    )
                if dataset is not None:
                    DATASETS.get(dataset)  # unknown name -> one line listing the bundled datasets
                profiles, settings, devices = _single_profile(devices, compute_speed)
                settings = with_options(settings)
            load_onnx(path)  # missing or corrupt file -> ModelError
            ds, sp, fit_role = recorded_split(path, dataset)
            kind = kind or recorded_task(path)  # judged by its own kind's metric and unit
            tr, val, te = sp.train, sp.val, sp.test
            if fit_role == "server":
                tr = sp.server
            if len(tr):
                fit_x, fit_y = ds.x[tr], ds.y[tr]
            say(f"{ds.name}: evaluating on the recorded test split ({len(te)} samples), selecting "
                f"on its validation split ({len(val)}), calibrating on the {fit_role} split "
                f"({len(tr)})")  # fmt: skip
            model = path
            onnx_only = True
        else:
            if not path.exists():
                raise ModelError(f"model or scenario file not found: {path}")
            raise ModelError(f"{path}: expected a scenario (.yaml) or an ONNX model (.onnx)")
        if devices:
            profiles = {d: profiles[d] for d in devices}
        if recipe_list:
            if not any(not r.steps for r in recipe_list):
                recipe_list.insert(0, make_recipe("fp32", []))
            space_list = recipe_list
        else:
            space_list = search_space_for(settings, onnx_only=onnx_only)
        if fit_x is None:
            space_list = calibration_free(space_list)
        say(f"measuring {len(space_list)} candidates")
        results = run_candidates(
            model,
            space_list,
            (fit_x, fit_y) if fit_x is not None else (ds.x[val], ds.y[val]),
            None if fit_x is None else fit_x[:256],
            eval_data=(ds.x[val], ds.y[val]),  # selection on validation
            measure=MeasureConfig(runs=runs, warmup=max(1, runs // 10)),
            labels=ds.classes,
            family=family,
            width=width,
            workdir=out / "candidates",
            seed=seed,
            task=kind,
        )
        from edgeintel.pipeline.sections import data_section as _data_section  # noqa: F401  (registers sections)
        from edgeintel.pipeline.sections import inference_section as _section  # noqa: F401
        from edgeintel.report import Figure, machine_info, package_versions, write_report
        from edgeintel.report.figures import png_base64

        x_te, y_te = ds.x[te], ds.y[te]
        test_acc = {r.recipe.name: onnx_metric(r.artifact.path, x_te, y_te, kind) for r in results}
        test_key = f"test_{results[0].final.metric}"  # test_accuracy, test_rmse, test_auroc
        choices = choose_for_profiles(
            results, profiles, settings, out, extra={"accuracy_split": "validation"}
        )
        figures = []
        for name, ch in choices.items():
            b64 = png_base64(pareto_figure(ch.search, f"{path.name}: candidates on {name}"))
            dst = inside(out, f"pareto_{name}", ".png", what="device profile name")
            dst.write_bytes(base64.b64decode(b64))
            figures.append(
                Figure(
                    "compression",
                    f"Pareto front for {name}",
                    b64,
                    f"Validation {results[0].final.metric} (selection) vs latency on {name} (this "
                    "machine's ONNX "
                    f"Runtime p50 / compute speed {profiles[name].compute_speed:g}); marker area ~ "
                    "ONNX size, green = meets the budget, black edge = Pareto front, red ring = "
                    "chosen.",
                )
            )
        section = {
            "target": str(path),
            "dataset": ds.name,
            "splits": {
                "validation": len(val),
                "test": len(te),
                "fit": 0 if fit_y is None else len(fit_y),
            },
            "per_profile": {
                k: {
                    **v.to_json(),
                    test_key: test_acc[v.search.chosen.label] if v.search.chosen else None,
                    "table": front_rows(v.search),
                }
                for k, v in choices.items()
            },
            "candidates": [
                {**r.summary_json(), test_key: test_acc[r.recipe.name]} for r in results
            ],
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


def recorded_task(path: Path) -> TaskKind | None:
    """The task kind the model ``path`` was trained for, with the options its run fitted on
    validation (the anomaly threshold, the regression tolerance): the ``extra.task`` record
    of its ``model.json`` (written at export by ``edgeintel run``); None without one."""
    from edgeintel.records import load_artifact
    from edgeintel.tasks import make_task

    meta = path.with_suffix(".json")
    if not meta.is_file():
        return None
    record = load_artifact(meta).extra.get("task")
    if record is None:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        raise ConfigError(f"{meta}: extra.task: expected an object with the task 'kind'")
    try:
        return make_task(record["kind"], **{k: v for k, v in record.items() if k != "kind"})
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{meta}: extra.task: {str(exc).splitlines()[0]}") from None


def recorded_split(path: Path, dataset: str | None) -> tuple[Any, Any, str]:
    """The dataset and split recorded in the model's metadata, reproduced; refuse without one.

    Returns (dataset, splits, fit role): ``train`` for a centrally trained model,
    ``server`` for an edge-trained one (its training data stayed on the devices).
    """
    from edgeintel.data.device_data import check_preprocessing, derive_run_data
    from edgeintel.data.provenance import CENTRAL_TRAIN, index_digest
    from edgeintel.records import Record, load_artifact
    from edgeintel.scenario import DataSpec

    meta = path.with_suffix(".json")
    record: Any = None
    extra: dict[str, Any] = {}
    if meta.is_file():
        extra = load_artifact(meta).extra
        record = extra.get("data_split")
    if record is not None and not isinstance(record, dict):
        raise ConfigError(
            f"{meta}: extra.data_split: expected an object (the data split record), "
            f"got {type(record).__name__}"
        )
    if not isinstance(record, dict):
        raise ConfigError(
            f"{meta}: no record of the data split {path.name} was trained on (written by "
            "`edgeintel run` at export); without it held-out accuracy cannot be measured"
        )
    if dataset is not None and dataset != record.get("dataset"):
        raise ConfigError(
            f"--dataset {dataset!r}: {path.name} was trained on {record.get('dataset')!r}"
        )
    pre = extra.get("preprocess")
    role = "train" if extra.get("trained_on", CENTRAL_TRAIN) == CENTRAL_TRAIN else "server"
    rec = Record(record, meta, "extra.data_split")
    raw = dict(rec.get("data_spec", dict, "an object (the data settings)"))
    seed = rec.integer("seed", 0)
    digest = rec.sub("digests").text("test")
    # a record written before data.standardize: whether the model saw standardised inputs
    raw.setdefault("standardize", isinstance(pre, dict))
    try:
        spec = DataSpec.model_validate(raw)
    except ValueError as exc:  # pydantic's ValidationError
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{meta}: extra.data_split.data_spec: {first}") from None
    kind = recorded_task(path)  # the kind decides the strata and which samples train
    rd = derive_run_data(
        spec, seed, edge=role == "server", kind=None if kind is None else kind.name
    )
    sp = rd.splits
    if index_digest(sp.test) != digest:
        raise ConfigError(
            f"{meta}: the recorded test split cannot be reproduced here (different data or "
            "edgeintel version); refusing to evaluate on samples the model may have seen"
        )
    check_preprocessing(pre, rd.standardizer, str(meta))
    return rd.dataset, sp, role
