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

from edgeintel.pipeline.core import run_pipeline
from edgeintel.pipeline.stages import compress_stage
from edgeintel.scenario import parse_scenario

from .conftest import tiny_scenario_dict


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in np.ascontiguousarray(x, dtype=np.float32)}


def _instrumented_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    server_fraction: float,
    finetune_rounds: int = 0,
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
    raw["settings"]["inference"]["compress"] = {"finetune_rounds": finetune_rounds}
    sc = parse_scenario(raw)
    res = run_pipeline(sc, tmp_path / "runs", "r", console=Console(quiet=True), show_progress=False)
    return res.results, fitted, seen["ctx"]


@pytest.mark.slow
def test_edge_trained_model_is_fitted_on_server_set_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Federated fine-tuning off (finetune_rounds: 0): every fit is on the server-held set."""
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
    # every calibrated candidate, and every shipped artifact, names the server-held set
    for c in results["compression"]["candidates"]:
        static = any("quantize_static" in s for s in c["recipe"]["steps"])
        assert c["data_roles"]["calibration"] == ("server-held set" if static else "none")
    assert any(
        c["data_roles"]["calibration"] != "none" for c in results["compression"]["candidates"]
    )
    for f in (tmp_path / "runs" / "r" / "compress").glob("*.json"):
        extra = json.loads(f.read_text())["extra"]
        static = any("quantize_static" in s for s in extra["recipe"]["steps"])
        assert extra["data_roles"]["calibration"] == ("server-held set" if static else "none")
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
    from edgeintel.pipeline.stages.basic_stages import DataStage

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


# --------------------------------------------------------------------------- federated fine-tuning


def _central_fit_spy(monkeypatch: pytest.MonkeyPatch, seen: list[np.ndarray]) -> None:
    """Record into ``seen`` every array that reaches a central fit: training, distillation,
    static-quantization calibration."""
    train_mod = importlib.import_module("edgeintel.models.train")
    distill_mod = importlib.import_module("edgeintel.inference.distill")
    quant_mod = importlib.import_module("edgeintel.inference.quantize")
    real_train, real_distill = train_mod.train_model, distill_mod.distill_train
    real_quant = quant_mod.quantize_static_onnx

    def train_spy(model: Any, x: np.ndarray, *a: Any, **kw: Any) -> Any:
        seen.append(np.asarray(x))
        return real_train(model, x, *a, **kw)

    def distill_spy(student: Any, teacher: Any, x: np.ndarray, *a: Any, **kw: Any) -> Any:
        seen.append(np.asarray(x))
        return real_distill(student, teacher, x, *a, **kw)

    def quant_spy(src: Any, dst: Any, calib: np.ndarray, *a: Any, **kw: Any) -> Any:
        seen.append(np.asarray(calib))
        return real_quant(src, dst, calib, *a, **kw)

    monkeypatch.setattr(train_mod, "train_model", train_spy)
    monkeypatch.setattr(distill_mod, "distill_train", distill_spy)
    monkeypatch.setattr(quant_mod, "quantize_static_onnx", quant_spy)


def _federated_ft_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_fraction: float, dp: bool
) -> tuple[dict[str, Any], list[np.ndarray], Any]:
    """A federated run whose compress stage is instrumented (spies set when it starts)."""
    seen: dict[str, Any] = {}
    fitted: list[np.ndarray] = []
    real_run = compress_stage.CompressStage.run

    def instrumented(self: Any, ctx: Any) -> None:
        seen["ctx"] = ctx
        _central_fit_spy(monkeypatch, fitted)
        real_run(self, ctx)

    monkeypatch.setattr(compress_stage.CompressStage, "run", instrumented)
    raw = tiny_scenario_dict()
    raw["data"]["server_fraction"] = server_fraction
    raw["settings"]["training"].update(
        mode="federated", rounds=2, local_steps=2, clients_per_round=3
    )
    if dp:
        raw["settings"]["training"]["dp"] = {"noise_multiplier": 1.5, "clip_norm": 1.0}
    raw["settings"]["inference"]["compress"] = {"search_space": "quick", "finetune_rounds": 2}
    sc = parse_scenario(raw)
    res = run_pipeline(sc, tmp_path / "runs", "r", console=Console(quiet=True), show_progress=False)
    return res.results, fitted, seen["ctx"]


@pytest.mark.slow
@pytest.mark.parametrize("server_fraction", [0.0, 0.15])
def test_fine_tuning_after_edge_training_is_federated_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_fraction: float
) -> None:
    """After edge training, fine-tuning runs as federated rounds over the device shards, no
    device-shard sample reaches a central fit or calibration, and every artifact (and the
    report) records which data each of its steps saw."""
    results, fitted, ctx = _federated_ft_run(tmp_path, monkeypatch, server_fraction, dp=False)
    comp = results["compression"]
    ft = comp["federated_fine_tuning"]
    assert ft["data"] == "device shards (federated rounds)"
    assert ft["runs"] and all(r["rounds"] == 2 for r in ft["runs"])
    # no device-shard sample in any central fit or calibration
    ds = ctx.dataset
    device_rows = set().union(*(_rows(ds.x[p]) for p in ctx.device_parts))
    server_rows = _rows(ds.x[ctx.server_idx])
    used = set().union(set(), *(_rows(x) for x in fitted))
    assert not (used & device_rows) - server_rows, "a device-held sample reached a central fit"
    assert used <= server_rows
    # roles per candidate and per artifact
    cands = {c["label"]: c for c in comp["candidates"]}
    pruned = next(c for name, c in cands.items() if name.startswith("prune50"))
    assert pruned["data_roles"]["fine_tuning"] == "device shards (federated rounds)"
    assert cands["fp32"]["data_roles"]["fine_tuning"] == "none"
    if server_fraction == 0:
        assert not used
        assert "prune50-int8-dyn" in cands and "int8-static" not in cands
        assert pruned["data_roles"]["calibration"] == "none"
    else:
        assert used, "calibration must have run on the server-held set"
        assert pruned["data_roles"]["calibration"] == "server-held set"
    meta = json.loads((tmp_path / "runs" / "r" / "compress" / "phone.json").read_text())
    chosen = comp["per_profile"]["phone"]["chosen"]
    assert meta["extra"]["data_roles"]["fine_tuning"] == cands[chosen]["data_roles"]["fine_tuning"]
    assert comp["per_profile"]["phone"]["data_roles"] == cands[chosen]["data_roles"]
    html = (tmp_path / "runs" / "r" / "report.html").read_text()
    assert "device shards (federated rounds)" in html


@pytest.mark.slow
def test_epsilon_after_federated_fine_tuning_composes_training_and_fine_tuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dp_accounting

    results, _, _ = _federated_ft_run(tmp_path, monkeypatch, 0.15, dp=True)
    train_eps = results["edge_training"]["privacy"]["dp"]["epsilon"]
    ft = results["compression"]["federated_fine_tuning"]
    eps = ft["privacy"]["epsilon"]
    assert eps > train_eps
    assert ft["privacy"]["epsilon_training_only"] == pytest.approx(train_eps, abs=1e-6)
    assert results["edge_training"]["privacy"]["dp"]["epsilon_with_fine_tuning"] == eps
    # the reference: dp-accounting composing every aggregation step of training (2 rounds)
    # and of each federated fine-tuning run (2 rounds each), 3 of 4 devices sampled
    assert ft["runs"]
    steps = 2 + 2 * len(ft["runs"])
    acc = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        4, 3, dp_accounting.GaussianDpEvent(1.5 / 2)
    )
    acc.compose(event, steps)
    assert eps == pytest.approx(acc.get_epsilon(1e-5), rel=1e-4)


def test_federated_space_drops_central_fits_without_a_server_set() -> None:
    from edgeintel.inference.devices import federated_space, recipe_data_roles
    from edgeintel.inference.search import default_search_space

    space = default_search_space()
    names = [r.name for r in federated_space(space, server_set=False)]
    assert "distill-int8" not in names and "int8-static" not in names
    assert {"prune50-int8-dyn", "qat-int8-dyn", "prune50", "int8-dynamic"} <= set(names)
    for r in federated_space(space, server_set=False):
        assert not {s.technique for s in r.steps} & {"quantize_static", "distill"}
    assert [r.name for r in federated_space(space, server_set=True)] == [r.name for r in space]
    by = {r.name: r for r in space}
    dev = "device shards (federated rounds)"
    assert recipe_data_roles(by["qat-int8"], "server-held set", dev) == {
        "fine_tuning": dev, "distillation": "none", "calibration": "server-held set"
    }  # fmt: skip
    assert recipe_data_roles(by["distill-int8"], "server-held set", dev)["fine_tuning"] == "none"
    assert recipe_data_roles(by["fp32"], "server-held set", dev) == dict.fromkeys(
        ("fine_tuning", "distillation", "calibration"), "none"
    )


@pytest.mark.slow
def test_clean_reference_run_is_accounted_in_the_same_budget(tmp_path: Path) -> None:
    """Beside an attacked run, the clean reference run also trains on the devices' data
    with DP: its steps compose into the run's budget."""
    import dp_accounting

    raw = tiny_scenario_dict()
    raw["settings"]["training"].update(
        mode="federated", rounds=2, local_steps=2, clients_per_round=3,
        attack="sign_flip", malicious_fraction=0.25,
        dp={"noise_multiplier": 1.5, "clip_norm": 1.0},
    )  # fmt: skip
    raw["settings"]["inference"]["compress"] = {"enabled": False}
    res = run_pipeline(
        parse_scenario(raw), tmp_path / "runs", "r", console=Console(quiet=True),
        show_progress=False, stages=["data", "edge_train"],
    )  # fmt: skip
    dp = res.results["edge_training"]["privacy"]["dp"]
    acc = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        4, 3, dp_accounting.GaussianDpEvent(1.5 / 2)
    )
    acc.compose(event, 4)  # 2 rounds of the attacked run + 2 of the clean reference
    assert dp["epsilon_with_clean_reference"] > dp["epsilon"]
    assert dp["epsilon_with_clean_reference"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-4)
