"""After edge training no device-held sample reaches a central fit or calibration.

The compression step is instrumented: every array handed to it for fine-tuning,
distillation or calibration is recorded and its rows are matched, byte for byte,
against the rows of every device's shard.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from edgeintel.pipeline import compress as compress_stage
from edgeintel.pipeline.core import run_pipeline
from edgeintel.scenario import parse_scenario

from .conftest import tiny_scenario_dict


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in np.ascontiguousarray(x, dtype=np.float32)}


def _instrumented_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, server_fraction: float
) -> tuple[dict[str, Any], list[np.ndarray], Any]:
    search = importlib.import_module("edgeintel.inference.search")  # the module, not the verb
    fitted: list[np.ndarray] = []
    real = search.compress

    def spy(model: Any, recipe: Any, train_data: Any, calib_data: Any = None, **kw: Any) -> Any:
        if any(s.technique != "quantize_dynamic" for s in recipe.steps):
            fitted.append(np.asarray(train_data[0]))  # fine-tuning / distillation data
            if calib_data is not None:
                fitted.append(np.asarray(calib_data))
        return real(model, recipe, train_data, calib_data, **kw)

    monkeypatch.setattr(search, "compress", spy)
    seen: dict[str, Any] = {}
    real_run = compress_stage.CompressStage.run

    def keep_ctx(self: Any, ctx: Any) -> None:
        seen["ctx"] = ctx
        real_run(self, ctx)

    monkeypatch.setattr(compress_stage.CompressStage, "run", keep_ctx)
    raw = tiny_scenario_dict()
    raw["data"]["server_fraction"] = server_fraction
    raw["settings"]["training"].update(mode=mode, rounds=2, local_steps=2)
    sc = parse_scenario(raw)
    res = run_pipeline(sc, tmp_path / "runs", "r", console=Console(quiet=True), show_progress=False)
    return res.results, fitted, seen["ctx"]


@pytest.mark.slow
def test_edge_trained_model_is_fitted_on_server_set_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, fitted, ctx = _instrumented_run(tmp_path, monkeypatch, "hierarchical", 0.15)
    assert fitted, "static quantization / pruning must have been fitted on something"
    ds = ctx.dataset
    device_rows = set().union(*(_rows(ds.x[p]) for p in ctx.device_parts))
    server_rows = _rows(ds.x[ctx.server_idx])
    used = set().union(*(_rows(x) for x in fitted))
    assert not (used & device_rows) - server_rows, "a device-held sample reached compression"
    assert used <= server_rows
    # index sets: server, validation and test are disjoint from every device shard
    shards = np.concatenate(ctx.device_parts)
    for idx in (ctx.server_idx, ctx.val_idx, ctx.test_idx):
        assert not np.intersect1d(idx, shards).size
    roles = results["compression"]["data_roles"]
    assert roles["model_trained_on"].startswith("device shards")
    assert roles["calibration"] == roles["fine_tuning"] == "server-held set"
    meta = json.loads((tmp_path / "runs" / "r" / "compress" / "phone.json").read_text())
    assert meta["extra"]["data_roles"]["calibration"] == "server-held set"
    summary = results["edge_training"]["summary"]
    assert summary["gap_to_central"] == pytest.approx(
        results["training"]["final_accuracy"] - summary["final_accuracy"], abs=1e-4
    )
    assert 0 < summary["chance_accuracy"] < 0.2


@pytest.mark.slow
def test_edge_trained_without_server_set_uses_no_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, fitted, _ = _instrumented_run(tmp_path, monkeypatch, "federated", 0.0)
    assert fitted == []
    labels = {c["label"] for c in results["compression"]["candidates"]}
    assert labels == {"fp32", "int8-dynamic"}
    assert results["compression"]["data_roles"]["calibration"] == "none"


@pytest.mark.slow
def test_central_model_is_fitted_on_the_central_train_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instrument sees pooled data when that is legitimate (so it can catch a leak)."""
    results, fitted, ctx = _instrumented_run(tmp_path, monkeypatch, "central", 0.0)
    used = set().union(*(_rows(x) for x in fitted))
    assert used & _rows(ctx.dataset.x[ctx.train_idx])
    assert not used & _rows(ctx.dataset.x[ctx.test_idx]) - _rows(ctx.dataset.x[ctx.train_idx])
    assert results["compression"]["data_roles"]["calibration"] == "central train split"


@pytest.mark.parametrize("mode", ["central", "federated"])
def test_standardisation_uses_training_statistics_only(tmp_path: Path, mode: str) -> None:
    """basic_motions is standardised per channel with statistics of the central train split
    (central model) or of the server-held sets (edge-trained model), never of the test set."""
    from edgeintel.data import load_dataset
    from edgeintel.pipeline.core import RunContext
    from edgeintel.pipeline.stages import DataStage

    raw = tiny_scenario_dict()
    raw["task"]["model"] = "sensor_cnn"
    raw["data"] = {"dataset": "basic_motions", "test_fraction": 0.3, "server_fraction": 0.1,
                   "partition": {"kind": "iid"}}  # fmt: skip
    raw["settings"]["training"]["mode"] = mode
    ctx = RunContext(parse_scenario(raw), tmp_path, Console(quiet=True))
    DataStage().run(ctx)
    x = load_dataset("basic_motions").x.astype(np.float64)
    assert ctx.val_idx is not None and ctx.server_idx is not None and ctx.train_idx is not None
    fit = ctx.train_idx if mode == "central" else np.concatenate([ctx.val_idx, ctx.server_idx])
    rec = ctx.results["data"]["standardization"]
    assert rec["samples"] == len(fit)
    assert rec["mean"] == pytest.approx(x[fit].mean(axis=(0, 2)).tolist(), rel=1e-6)
    assert rec["mean"] != pytest.approx(x.mean(axis=(0, 2)).tolist(), rel=1e-6)
    train_x = ctx.dataset.x[ctx.train_idx if mode == "central" else fit]
    assert np.abs(train_x.mean(axis=(0, 2))).max() < 1e-4  # zero mean where it was fitted
