"""Recipes, the compress verb, every registered compressor, and the constraint search."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgeintel.errors import ConfigError
from edgeintel.inference import (
    TECHNIQUES,
    Budget,
    BudgetError,
    MeasureConfig,
    compress,
    load_recipe,
    make_recipe,
    pareto_front,
    run_candidates,
    select,
)
from edgeintel.inference.measure import Measurement
from edgeintel.inference.search import tie_margin
from edgeintel.latency import LatencyStats

from .conftest import Trained

FAST = MeasureConfig(runs=5, warmup=1)


def test_recipe_from_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "r.yaml"
    y.write_text(
        "name: p-q\nsteps:\n  - prune_structured: {ratio: 0.25}\n  - quantize_static:\n"
        "      calibration: entropy\n"
    )
    r = load_recipe(y)
    assert r.name == "p-q" and [s.technique for s in r.steps] == [
        "prune_structured",
        "quantize_static",
    ]
    assert (
        r.steps[0].config.ratio == 0.25
        and r.label() == "prune_structured(0.25) -> quantize_static(entropy)"
    )
    j = tmp_path / "r.json"
    j.write_text(json.dumps(r.to_json()))
    assert load_recipe(j).to_json() == r.to_json()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            ["quantize_static", "prune_structured"],
            r"steps\[1\] \(prune_structured\) works on the PyTorch",
        ),
        (["quantize_static", "quantize_dynamic"], "only one ONNX step"),
        (
            ["sparsify"],
            "unknown compression technique 'sparsify'; expected one of: compact, distill",
        ),
        (
            [{"prune_structured": {"ratio": 1.2}}],
            r"prune_structured.ratio must lie in \(0, 1\), got 1.2",
        ),
        ([{"low_rank": {"rank": 3}}], "low_rank: unknown option 'rank'"),
        ([42], r"steps\[0\] must be a technique name"),
    ],
)
def test_bad_recipes(steps: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make_recipe("bad", steps)
    assert "\n" not in str(info.value)


def test_recipe_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: [\n")
    with pytest.raises(ConfigError, match="not a valid recipe file"):
        load_recipe(bad)


# techniques that do not shrink the model themselves (QAT readies it for quantize_static)
SIZE_NEUTRAL = {"qat"}


@pytest.mark.slow
@pytest.mark.parametrize("technique", TECHNIQUES.names())
def test_every_compressor_contract(digits_cnn: Trained, tmp_path: Path, technique: str) -> None:
    """Each registered technique: same outputs, smaller on disk (zlib for sparsity; QAT keeps
    the size), accurate."""
    res = compress(
        digits_cnn.model,
        [technique],
        digits_cnn.train,
        digits_cnn.x_tr[:64],
        eval_data=digits_cnn.test,
        family="image_cnn",
        width=16,
        workdir=tmp_path,
        measure=FAST,
    )
    b, f = res.baseline, res.final
    assert [s.technique for s in res.stages] == ["fp32", technique]
    if technique in SIZE_NEUTRAL:  # prepares for a later step; same graph, same size
        assert f.params == b.params and abs(f.onnx_bytes - b.onnx_bytes) < 0.01 * b.onnx_bytes
    else:
        assert f.compressed_bytes < b.compressed_bytes
    assert f.accuracy >= b.accuracy - 0.12
    assert Path(res.artifact.path).is_file() and res.artifact.bytes == f.onnx_bytes
    assert Path(res.artifact.path).with_suffix(".json").is_file()


def test_onnx_input_refuses_torch_steps(digits_cnn: Trained) -> None:
    with pytest.raises(ConfigError, match=r"prune_structured works on a PyTorch model.*ONNX file"):
        compress(digits_cnn.onnx_path, ["prune_structured"], digits_cnn.train)


def test_compress_shares_prefixes_and_measures_each_stage(
    digits_cnn: Trained, tmp_path: Path
) -> None:
    cache: dict = {}
    r = compress(
        digits_cnn.model,
        [("prune_structured", {"ratio": 0.5}), "quantize_static"],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
        cache=cache,
    )
    assert len(r.stages) == 3 and len(cache) == 3
    sizes = [s.measurement.onnx_bytes for s in r.stages]
    assert sizes[0] > sizes[1] > sizes[2]
    assert r.ratios()["size_ratio"] == pytest.approx(sizes[0] / sizes[2])
    r2 = compress(
        digits_cnn.model,
        [("prune_structured", {"ratio": 0.5})],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
        cache=cache,
    )
    assert r2.stages[1] is r.stages[1] and len(cache) == 3


def test_pareto_front_by_hand() -> None:
    costs = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [2, 2], [6, 6]])
    assert pareto_front(costs) == [0, 1, 2, 4]


class _Fake:
    """Stands in for a CompressionResult in selection tests (only what select reads)."""

    def __init__(self, name: str, acc: float, p50: float, size: int, mem: int) -> None:
        from edgeintel.inference.recipe import Recipe

        lat = LatencyStats(p50, p50 * 1.2, p50, 10)
        self.recipe = Recipe(name)
        self.final = Measurement(1, size, size, 1, acc, lat, lat, 1.0, mem)


def _fakes(rng: np.random.Generator, n: int) -> list:
    return [
        _Fake(
            f"c{i}",
            float(rng.uniform(0.5, 1)),
            float(rng.uniform(0.1, 5)),
            int(rng.integers(1e3, 1e6)),
            int(rng.integers(1e4, 1e7)),
        )
        for i in range(n)
    ]


def test_search_never_returns_a_candidate_that_violates_the_budget() -> None:
    rng = np.random.default_rng(0)
    chosen_any = raised = 0
    for _ in range(300):
        cands = _fakes(rng, 8)
        budget = Budget(
            max_latency_ms=float(rng.uniform(0.5, 30)),
            max_bytes=int(rng.integers(1e4, 1e6)),
            max_peak_memory_bytes=int(rng.integers(1e5, 1e7)),
            min_accuracy=float(rng.uniform(0.5, 0.95)),
            compute_speed=float(rng.uniform(0.1, 2)),
            latency_stat=str(rng.choice(["p50", "p95"])),
        )
        try:
            sr = select(cands, budget, str(rng.choice(["accuracy", "latency", "size"])))  # type: ignore[arg-type]
        except BudgetError as exc:
            raised += 1
            assert all(budget.violations(c.final) for c in cands)
            assert exc.search.chosen is None
            continue
        chosen_any += 1
        assert sr.chosen is not None and budget.violations(sr.chosen.measurement) == []
        lat = (
            sr.chosen.measurement.latency.p50_ms
            if budget.latency_stat == "p50"
            else sr.chosen.measurement.latency.p95_ms
        )
        assert lat / budget.compute_speed <= budget.max_latency_ms  # type: ignore[operator]
        assert set(sr.rejected) == {c.recipe.name for c in cands} - {sr.chosen.label}
        assert all(reason for reason in sr.rejected.values())
    assert chosen_any > 30 and raised > 30  # both branches exercised


def test_choice_by_objective_and_reasons() -> None:
    a = _Fake("accurate", 0.99, 4.0, 400_000, 10**6)
    f = _Fake("fast", 0.95, 1.0, 200_000, 10**6)
    s = _Fake("small", 0.96, 2.0, 50_000, 10**6)
    slow = _Fake("slow", 0.999, 50.0, 900_000, 10**6)
    budget = Budget(max_latency_ms=10.0, min_accuracy=0.9)
    sr = select([a, f, s, slow], budget)  # type: ignore[list-item]
    assert sr.chosen is not None and sr.chosen.label == "accurate"
    assert sr.rejected["slow"] == "misses latency 50 ms > 10 ms"
    assert sr.rejected["fast"].startswith("meets the budget but is not the best by accuracy")
    assert [sr.candidates[i].label for i in sr.front] == ["accurate", "fast", "small", "slow"]
    assert select([a, f, s], budget, "latency").chosen.label == "fast"  # type: ignore[union-attr,list-item]
    assert select([a, f, s], budget, "size").chosen.label == "small"  # type: ignore[union-attr,list-item]
    # a device 10x slower: latencies scale, only 'fast' and 'small' fit 25 ms
    slow_dev = Budget(max_latency_ms=25.0, compute_speed=0.1)
    assert select([a, f, s], slow_dev).chosen.label == "small"  # type: ignore[union-attr,list-item]


def test_unmeetable_budget_names_closest_candidate_and_constraint() -> None:
    a = _Fake("int8", 0.97, 2.0, 100_000, 10**6)
    b = _Fake("fp32", 0.98, 4.0, 400_000, 10**6)
    with pytest.raises(BudgetError) as info:
        select([a, b], Budget(max_latency_ms=1.5, min_accuracy=0.9), device="watch")  # type: ignore[list-item]
    msg = str(info.value)
    assert msg == (
        "no candidate meets the budget for watch: closest is 'int8', which misses latency "
        "2 ms > 1.5 ms (largest miss: latency)"
    )
    assert isinstance(info.value, ConfigError)


def test_budget_validation() -> None:
    with pytest.raises(ConfigError, match=r"budget\.max_latency_ms must be > 0"):
        Budget(max_latency_ms=0)
    with pytest.raises(ConfigError, match=r"budget.min_accuracy must lie in \[0, 1\]"):
        Budget(min_accuracy=95)


@pytest.mark.slow
def test_search_on_real_digits(digits_cnn: Trained, tmp_path: Path) -> None:
    space = [
        make_recipe("fp32", []),
        make_recipe("int8", ["quantize_static"]),
        make_recipe("p50-int8", [("prune_structured", {"ratio": 0.5}), "quantize_static"]),
    ]
    results = run_candidates(
        digits_cnn.model,
        space,
        digits_cnn.train,
        eval_data=digits_cnn.test,
        workdir=tmp_path,
        measure=FAST,
    )
    fp32_bytes = results[0].final.onnx_bytes
    budget = Budget(max_bytes=fp32_bytes // 3, min_accuracy=0.8)
    sr = select(results, budget)
    assert sr.chosen is not None and sr.chosen.measurement.onnx_bytes <= fp32_bytes // 3
    assert "misses bytes" in sr.rejected["fp32"]


def test_accuracies_within_the_validation_uncertainty_tie_and_the_faster_wins() -> None:
    # the case: int8 at 0.17 ms beat fp32 at 0.046 ms by 1 of 180 validation samples
    def fake(name: str, acc: float, p50: float, n: int) -> _Fake:
        f = _Fake(name, acc, p50, 100_000, 10**6)
        f.final = replace(f.final, samples=n)
        return f

    fp32, int8 = fake("fp32", 0.9722, 0.046, 180), fake("int8", 0.9778, 0.17, 180)
    budget = Budget()
    sr = select([fp32, int8], budget)  # type: ignore[list-item]
    assert sr.chosen is not None and sr.chosen.label == "fp32"
    assert "within the validation uncertainty" in sr.chosen.reason
    assert sr.rejected["int8"].startswith("ties the chosen fp32")
    # half-width of 0.978 on 180 samples: 1.96 * sqrt(.978 * .022 / 180) = 0.0214
    assert tie_margin(int8.final) == pytest.approx(0.02143, abs=1e-4)
    # a real difference (beyond the margin) still decides by accuracy
    worse = fake("worse", 0.90, 0.01, 180)
    assert select([worse, int8], budget).chosen.label == "int8"  # type: ignore[union-attr,list-item]
    # many samples make the margin small: the same gap would then decide
    assert tie_margin(replace(int8.final, samples=100_000)) < 0.001
