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
from edgeintel.paths import inside
from edgeintel.scenario import CompressBudget, CompressSettings, DeviceProfile

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
    """Compress a scenario's model or an ONNX file for device profiles; see module docstring."""
    from edgeintel.data import load_data, load_dataset, train_test_split
    from edgeintel.scenario import load_scenario

    say = on_step or (lambda _msg: None)
    path = Path(target)
    out = Path(out_dir)
    recipe_list: list[Recipe] = [load_recipe(r) for r in recipes or []]
    suffix = path.suffix.lower()
    family = width = None
    if suffix in (".yaml", ".yml"):
        from edgeintel.models import build_model
        from edgeintel.training.local import TrainConfig, train_model

        sc = load_scenario(path)
        seed = sc.seed if seed is None else seed
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
