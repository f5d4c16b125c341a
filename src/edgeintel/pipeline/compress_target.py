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
import io
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
    choose_for_profiles,
    front_rows,
    pareto_figure,
    search_space_for,
)
from edgeintel.inference.measure import MeasureConfig, load_onnx
from edgeintel.inference.recipe import Recipe, load_recipe, make_recipe
from edgeintel.inference.search import run_candidates
from edgeintel.inference.settings import CompressBudget, CompressSettings
from edgeintel.paths import check_out_dir, inside, safe_name
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


_OPTION_OF = {
    "search_space": "--space",
    "objective": "--objective",
    "max_latency_ms": "--max-latency-ms",
    "max_model_kb": "--max-kb",
    "min_accuracy": "--min-accuracy",
}


def _overrides(
    settings: CompressSettings,
    space: str | None,
    objective: str | None,
    max_latency_ms: float | None,
    max_kb: float | None,
    min_accuracy: float | None,
) -> CompressSettings:
    """``settings`` with the command-line options applied; a bad option is a one-line
    ``ConfigError`` naming the option and the values it accepts."""
    from pydantic import ValidationError

    choices = {"--space": ("quick", "default"), "--objective": ("accuracy", "latency", "size")}
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
        }.items()
        if v is not None
    }
    for key, value in limits.items():
        option = _OPTION_OF[key]
        if not math.isfinite(value):
            raise ConfigError(f"{option}: expected a finite number, got {value}")
        if key == "min_accuracy" and not 0 <= value <= 1:
            raise ConfigError(f"{option}: expected an accuracy in [0, 1], got {value}")
        if key != "min_accuracy" and not value > 0:
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
    """Compress a scenario's model or an ONNX file for device profiles; see module docstring.

    Every option, the device names and the data are checked before any training.
    """
    from edgeintel.data import DATASETS, load_data, load_dataset, train_test_split
    from edgeintel.scenario import load_scenario

    say = on_step or (lambda _msg: None)
    path = Path(target)
    out = check_out_dir(out_dir, "--out")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 5:
        raise ConfigError(f"--runs: expected an integer >= 5 timed runs, got {runs!r}")
    if seed is not None and not 0 <= seed < 2**32:
        raise ConfigError(f"seed: expected an integer in [0, 2**32), got {seed}")
    for d in devices or []:
        safe_name(d, "--device")
    recipe_list: list[Recipe] = [load_recipe(r) for r in recipes or []]
    suffix = path.suffix.lower()
    family = width = None
    if suffix in (".yaml", ".yml"):
        from edgeintel.models import build_model
        from edgeintel.models.train import TrainConfig, train_model
        from edgeintel.pipeline.preflight import preflight

        sc = load_scenario(path)
        if dataset is not None:
            raise ConfigError("--dataset: only for an ONNX model; a scenario names its data")
        profiles = dict(sc.device_profiles)
        _check_devices(devices, profiles)
        settings = _overrides(
            sc.settings.inference.compress, space, objective, max_latency_ms, max_kb, min_accuracy
        )
        search_space_for(settings)  # recipe options of the space are valid
        seed = sc.seed if seed is None else seed
        sc = sc.model_copy(update={"seed": seed})
        preflight(sc, ["data", "train", "compress"], scenario_file=str(path))
        ds = load_data(sc.data, seed=seed)
        tr, te = train_test_split(ds.y, sc.data.test_fraction, seed=seed)
        t = sc.settings.training
        family, width = sc.task.model, sc.task.width
        model: Any = build_model(family, ds.sample_shape, ds.num_classes, width=width, seed=seed)
        say(f"training {family} (width {width}) on {ds.name} for {t.epochs} epochs")
        train_model(
            model,
            ds.x[tr],
            ds.y[tr],
            TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr),
            seed=seed,
        )
        onnx_only = False
    elif suffix == ".onnx":
        if not isinstance(compute_speed, int | float) or not (
            math.isfinite(compute_speed) and compute_speed > 0
        ):
            raise ConfigError(f"--compute-speed: expected a finite number > 0, got {compute_speed}")
        if devices and len(devices) > 1:
            raise ConfigError(
                "--device: an ONNX model is judged for one device (named by --device and "
                f"--compute-speed); got {len(devices)}"
            )
        if dataset is None:
            raise ConfigError("--dataset: an ONNX model needs a bundled dataset to calibrate on")
        DATASETS.get(dataset)  # unknown name -> one line listing the bundled datasets
        settings = _overrides(CompressSettings(), space, objective, max_latency_ms, max_kb, None)
        if min_accuracy is not None:
            settings = _overrides(settings, None, None, None, None, min_accuracy)
        load_onnx(path)  # missing or corrupt file -> ModelError
        seed = 0 if seed is None else seed
        ds = load_dataset(dataset)
        tr, te = train_test_split(ds.y, 0.25, seed=seed)
        model = path
        name = (devices or ["device"])[0]
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
    figures = []
    for name, ch in choices.items():
        fig = pareto_figure(ch.search, f"{path.name}: candidates on {name}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        inside(out, f"pareto_{name}", ".png", what="device profile name").write_bytes(
            buf.getvalue()
        )
        import matplotlib.pyplot as plt

        plt.close(fig)
        figures.append((name, base64.b64encode(buf.getvalue()).decode("ascii")))
    section = {
        "target": str(path),
        "dataset": ds.name,
        "per_profile": {
            k: {**v.to_json(), "table": front_rows(v.search)} for k, v in choices.items()
        },
        "candidates": [r.summary_json() for r in results],
    }
    (out / "search.json").write_text(json.dumps(section, indent=2, default=str))
    report = out / "report.html"
    report.write_text(_report_html(section, figures))
    return CompressOutcome(results, choices, out, report)


def _report_html(section: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    """The compression report section as a self-contained HTML page."""
    import html

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgeintel compress</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
        "tr:nth-child(even){background:#f4f4f4}.no{color:#999}</style></head><body>",
        f"<h1>Compression of {html.escape(section['target'])}</h1>",
        f"<p>created {datetime.now(UTC).isoformat(timespec='seconds')}; held-out data: "
        f"{html.escape(section['dataset'])}</p>",
    ]
    for (name, b64), (_, prof) in zip(figures, section["per_profile"].items(), strict=True):
        parts.append(f"<h2>{html.escape(name)}: chosen {html.escape(prof['chosen'])}</h2>")
        parts.append(f"<img src='data:image/png;base64,{b64}' alt='Pareto front {name}'>")
        rows = prof["table"]
        parts.append("<table><tr>" + "".join(f"<th>{k}</th>" for k in rows[0]) + "</tr>")
        for r in rows:
            cls = "" if r["verdict"].startswith(("chosen", "meets")) else " class='no'"
            parts.append(
                f"<tr{cls}>"
                + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values())
                + "</tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
