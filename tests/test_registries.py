"""One contract over every registry entry (scikit-learn's habit of checking every estimator).

Each registered dataset, partitioner, model family, aggregation rule, attack,
update compressor, federated algorithm, compression technique, pipeline stage,
split search, placement policy, cache policy, difference feature, object
counter, content placement, report section, task kind, drift detector and device runtime
can be named (in a scenario, a recipe or a call), configured, run on a tiny input, and
round-trips its config. A new entry is covered the moment it is registered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import edgeintel
from edgeintel.caching import FEATURES, FRAME_FEATURES, POLICIES, make_policy, miss_ratio, prepare
from edgeintel.caching.detectors import COUNTERS
from edgeintel.caching.placement import CONTENT_PLACEMENTS, Delivery, zipf_demand
from edgeintel.caching.policies import opt_hits, simulate
from edgeintel.data import DATASETS, PARTITIONERS, Target, load_data, load_dataset, partition
from edgeintel.errors import ConfigError, ModelError
from edgeintel.inference import TECHNIQUES, MeasureConfig, compress, parse_recipe
from edgeintel.inference.runtimes import RUNTIMES
from edgeintel.models import MODELS, build_model
from edgeintel.models.train import TrainConfig, train_model
from edgeintel.monitoring.drift import CORRECTIONS, DRIFT_DETECTORS, DriftConfig
from edgeintel.offloading.costs import Breakdown, LinkState, OffloadObjective
from edgeintel.offloading.placement import PLACEMENTS, FleetProblem, Option, Resource, place
from edgeintel.offloading.split_search import (
    SPLITTERS,
    SplitContext,
    SplitDecision,
    linear_value,
    plan_split,
)
from edgeintel.pipeline import STAGES, ordered_stages, run_pipeline
from edgeintel.registry import Registry
from edgeintel.report.sections import SECTIONS, RenderContext, SectionSpec
from edgeintel.report.task_plots import TASK_PLOTS, TaskFigure, task_figures
from edgeintel.runtime.guards import GUARDS
from edgeintel.scenario import Scenario, TrainingMode, dump_scenario, parse_scenario
from edgeintel.tasks import TASKS
from edgeintel.training import (
    AGGREGATORS,
    ATTACKS,
    SERVER_OPTIMIZERS,
    UPDATE_COMPRESSORS,
    AggregationConfig,
    aggregate,
    make_attack,
    make_compressor,
    server_step,
)
from edgeintel.training.scenario_train import federated_config

from .conftest import tiny_scenario_dict
from .offloading.conftest import random_costs, random_dag

# > 2 s to load here
SLOW_DATASETS = {
    "mnist",
    "acsf1",
    "video_scenes",
    "solar_sites",
    "voice_commands",
    "fashion_mnist",
    "household_power",
}


def _scenario(**parts: Any) -> Scenario:
    """The tiny scenario with ``data``, ``task`` or ``training`` fields replaced."""
    raw = tiny_scenario_dict()
    raw["data"].update(parts.get("data", {}))
    raw["task"].update(parts.get("task", {}))
    raw["settings"]["training"].update(parts.get("training", {}))
    for part in ("offloading", "caching"):
        if part in parts:
            raw["settings"][part] = parts[part]
    sc = parse_scenario(raw)
    assert parse_scenario(dump_scenario(sc)) == sc  # the config round-trips
    return sc


def _engine_config(**training: Any) -> Any:
    sc = _scenario(training={"clip_norm": 1.0, "topk_ratio": 0.25, **training})
    return federated_config(sc.settings.training, TrainingMode.FEDERATED, sc.seed)


def _roundtrip(cfg: Any) -> None:
    assert type(cfg)(**dataclasses.asdict(cfg)) == cfg


# --------------------------------------------------------------------------- per registry


def _dataset(name: str) -> None:
    sc = _scenario(data={"dataset": name, "max_samples": 40, "partition": {"kind": "iid"}})
    ds = load_data(sc.data, seed=sc.seed)
    assert len(ds) == 40 and ds.x.dtype == np.float32 and np.isfinite(ds.x).all()
    assert ds.strata.dtype == np.int64 and len(ds.strata) == 40
    if ds.target is Target.VALUE:  # real-valued targets, one name per target column
        assert ds.y.dtype == np.float32 and np.isfinite(ds.y).all()
        assert len(ds.classes) == (1 if ds.y.ndim == 1 else ds.y.shape[1])
    else:
        assert ds.y.dtype == np.int64
        assert ds.y.min() >= 0 and ds.y.max() < ds.num_classes == len(ds.classes)


def _partitioner(name: str) -> None:
    sc = _scenario(data={"partition": {"kind": name, "alpha": 1.0}})
    spec = sc.data.partition
    y = np.repeat(np.arange(4), 10)
    groups = np.arange(40) % 5
    parts = partition(y, 4, spec.kind, seed=0, groups=groups, alpha=spec.alpha)
    assert len(parts) == 4
    flat = np.concatenate(parts)
    assert len(flat) == len(set(flat.tolist())) and set(flat.tolist()) <= set(range(40))


def _model(name: str) -> None:
    sc = _scenario(task={"model": name, "width": 4})
    built = 0
    # small image families, sensor families (mlp takes both), torchvision families (RGB >= 96 px),
    # audio families (mono, >= 100 ms at 8 kHz)
    for shape in ((1, 8, 8), (3, 32), (3, 96, 96), (1, 800)):
        try:
            model = build_model(sc.task.model, shape, 3, width=sc.task.width, seed=0)
        except (ConfigError, ModelError, ValueError, RuntimeError):
            continue
        model.eval()
        with torch.no_grad():
            assert model(torch.zeros(2, *shape)).shape == (2, 3)
        built += 1
    assert built >= 1


def _updates() -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
            for _ in range(6)]  # fmt: skip


def _aggregator(name: str) -> None:
    cfg = dataclasses.replace(_engine_config(aggregation=name).aggregation, f=1)
    assert cfg.rule == name
    out = aggregate(_updates(), np.arange(1.0, 7.0), cfg)
    assert [a.shape for a in out] == [(3, 2), (2,)] and all(np.isfinite(a).all() for a in out)
    _roundtrip(cfg)


def _attack(name: str) -> None:
    cfg = _engine_config(attack=name, malicious_fraction=0.25).attack
    assert cfg is not None and cfg.name == name
    attack = make_attack(cfg)
    rng = np.random.default_rng(0)
    honest = rng.normal(size=(8, 5)).astype(np.float32)
    bad = np.zeros(8, dtype=bool)
    bad[:2] = True
    out = attack.poison_updates(honest, bad, rng)
    assert out.shape == honest.shape and np.array_equal(out[~bad], honest[~bad])
    y = attack.poison_labels(np.arange(10) % 4, 4)
    assert y.shape == (10,) and y.min() >= 0 and y.max() < 4
    _roundtrip(cfg)


def _update_compressor(name: str) -> None:
    cfg = _engine_config(compressor=name).compressor
    assert cfg.name == name
    vec = np.random.default_rng(0).normal(size=100).astype(np.float32)
    blob, decoded = make_compressor(cfg).roundtrip(vec)
    assert decoded.shape == vec.shape and len(blob) <= vec.nbytes
    _roundtrip(cfg)


def _algorithm(name: str) -> None:
    cfg = _engine_config(algorithm=name).server
    assert cfg.algorithm == name
    w, d = np.zeros(4, np.float32), np.ones(4, np.float32)
    new, state = server_step(w, d, {}, cfg)
    assert new.shape == (4,) and (new > 0).all() and np.array_equal(w, np.zeros(4))
    new2, _ = server_step(new, d, state, cfg)  # the state it returned is accepted back
    assert (new2 > new).all()
    _roundtrip(cfg)


@pytest.fixture(scope="module")
def tiny_cnn() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    ds = load_dataset("digits")
    x, y = ds.x[:300], ds.y[:300]
    model = build_model("image_cnn", ds.sample_shape, ds.num_classes, width=4, seed=0)
    train_model(model, x, y, TrainConfig(epochs=1, batch_size=32), seed=0)
    return model, x, y


def _technique(name: str, tiny: Any, tmp: Path) -> None:
    recipe = parse_recipe({"name": "one", "steps": [name]})
    assert parse_recipe(json.loads(json.dumps(recipe.to_json()))) == recipe  # round-trips
    model, x, y = tiny
    res = compress(model, recipe, (x, y), x[:32], family="image_cnn", width=4, workdir=tmp,
                   measure=MeasureConfig(runs=5, warmup=1))  # fmt: skip
    assert [s.technique for s in res.stages] == ["fp32", name]
    assert Path(res.artifact.path).is_file()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, dict[str, Any]]:
    raw = tiny_scenario_dict()  # every stage runs: the runtime deploys for 2 s on loopback
    raw["settings"]["runtime"] = {
        "deploy": {"enabled": True, "duration_s": 2, "max_devices": 2, "drain_timeout_s": 10}
    }
    sc = parse_scenario(raw)
    runs = tmp_path_factory.mktemp("runs")
    return sc, run_pipeline(sc, runs_dir=runs, run_id="r", show_progress=False).results


def _stage(name: str, run: tuple[Scenario, dict[str, Any]]) -> None:
    sc, results = run
    (stage,) = ordered_stages([name])  # named
    assert stage.name == name and isinstance(stage.order, int)
    assert name in results["stages"] and results["timings_s"][name] >= 0  # ran on a tiny run
    # its configuration is the scenario, which round-trips to the same hash
    again = json.dumps(dump_scenario(parse_scenario(dump_scenario(sc))), sort_keys=True)
    assert hashlib.sha256(again.encode()).hexdigest()[:16] == results["scenario"]["hash"]


def _split_search(name: str) -> None:
    if name == "brute_force":  # the tests' reference: callable by name, refused in a scenario
        with pytest.raises(ConfigError, match=r"settings\.offloading\.splitter: unknown split"):
            _scenario(offloading={"splitter": name})
    else:
        assert _scenario(offloading={"splitter": name}).settings.offloading.splitter == name
    g = random_dag(8, seed=3, chain=True)  # a chain: every split search is exact on it
    lin = random_costs(g, 3)
    mask = SPLITTERS.get(name)(g, lin)
    assert mask.dtype == bool and mask.shape == (g.num_nodes,) and g.is_valid_cut(mask)
    best = linear_value(g, lin, SPLITTERS.get("brute_force")(g, lin))
    assert linear_value(g, lin, mask) == pytest.approx(best, rel=1e-9)
    real = random_dag(6, seed=1)
    ctx = SplitContext(  # a phone 4x slower than the server, on a 20 Mbit/s, 10 ms link
        device_ms=np.full(real.num_nodes, 4.0), server_ms=np.full(real.num_nodes, 1.0),
        link=LinkState(20.0, rtt_ms=10.0), objective=OffloadObjective.ENERGY,
    )  # fmt: skip
    decision = plan_split(real, ctx, splitter=name, deadline_ms=1e3)
    assert isinstance(decision, SplitDecision) and real.is_valid_cut(decision.mask)
    assert decision.meets_deadline
    assert {f.name for f in dataclasses.fields(ctx)} >= {"device_ms", "link", "objective"}


def _fleet() -> FleetProblem:
    """Two phones, each local (60 ms) or on one edge server (10 ms work, 15 ms network)."""
    res = {"edge": Resource("edge", "edge", workers=1, background=0.0, service_ms=10.0)}
    options = []
    for d in ("p0", "p1"):
        res[d] = Resource(d, "device", 1, 0.0, 60.0)
        local = Option("local", "local", None, Breakdown(60.0), 0.1, 60.0, 0.0, ((d, 60.0),))
        edge = Option("d2e:edge", "d2e", "edge", Breakdown(0.0, uplink_ms=10.0, rtt_ms=5.0,
                      server_ms=10.0), 0.02, 25.0, 10.0)  # fmt: skip
        options.append([local, edge])
    return FleetProblem(devices=["p0", "p1"], options=options, rates_hz=np.full(2, 2.0),
                        deadlines_ms=np.full(2, np.inf), wait_weight=np.ones(2),
                        idle_w=np.full(2, 0.1), resources=res)  # fmt: skip


def _placement(name: str) -> None:
    assert _scenario(offloading={"placement": name}).settings.offloading.placement == name
    problem = _fleet()
    choice = PLACEMENTS.get(name)(problem)
    assert len(choice) == 2 and all(0 <= c < 2 for c in choice)
    plan = place(problem, policy=name)
    assert plan.feasible and plan.choice == [1, 1]  # 4 Hz on a 10 ms server: offload both


def _cache_policy(name: str) -> None:
    sc = _scenario(caching={"policies": [name], "result_cache": {"policy": name}})
    assert (
        sc.settings.caching.policies == [name] and sc.settings.caching.result_cache.policy == name
    )
    cache = make_policy(name, 2)
    assert [cache.request(k) for k in ("a", "b", "a")] == [False, False, True]
    assert len(cache) == 2 and "a" in cache and cache.discard("a") and "a" not in cache
    trace = np.random.default_rng(0).zipf(1.3, 400) % 30
    assert miss_ratio("opt", trace, 5) <= miss_ratio(name, trace, 5) <= 1.0
    pol = make_policy(name, 3)
    inside: set[int] = set()  # what admit's eviction reports say the cache holds
    for k in [0, 1, 2, 0, 3, 4, 0, 5, 1]:
        if not pol.lookup(k):
            out = pol.admit(k)
            assert set(out) <= inside and not any(e in pol for e in out)
            inside = (inside - set(out)) | {k}
        assert len(pol) <= 3 and inside == {j for j in range(6) if j in pol}
    kept = sorted(inside)
    assert pol.discard(kept[0]) and kept[0] not in pol
    trace = np.random.default_rng(0).integers(0, 60, size=2000)
    assert simulate(make_policy(name, 150), trace) <= opt_hits(trace, 150)  # OPT is a bound
    with pytest.raises(ConfigError, match="capacity"):
        make_policy(name, 0)


def _difference_feature(name: str) -> None:
    sc = _scenario(caching={"filter": {"features": [name]}})
    assert sc.settings.caching.filter.features == [name]
    rng = np.random.default_rng(0)
    if name in FRAME_FEATURES:
        frame = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        a = prepare(frame)
        frame[10:30, 20:44] = 255  # a bright object enters the scene
        b = prepare(frame)
    else:
        a = prepare(rng.normal(size=(3, 32)))
        b = prepare(rng.normal(5.0, 3.0, size=(3, 32)))
    fn = FEATURES.get(name)
    assert fn(a, a) == pytest.approx(0.0, abs=1e-9)
    assert fn(a, b) > fn(a, a)


def _content_placement(name: str) -> None:
    demand, _ = zipf_demand(3, 40, 0.9, 400, 0.3, seed=0)
    cap, nb, dl = [5, 3, 0], [[1], [0, 2], [1]], Delivery(5.0, 20.0, 100.0)
    place = CONTENT_PLACEMENTS.get(name)
    p = place(demand, cap, nb, dl)
    assert len(p.cached) == 3
    for ids, c in zip(p.cached, cap, strict=True):  # within capacity, valid, sorted, unique
        assert len(ids) <= c and np.all(np.diff(ids) > 0) and ((ids >= 0) & (ids < 40)).all()
    assert p.value >= 0
    again = place(demand, cap, nb, dl)  # deterministic
    assert [a.tolist() for a in again.cached] == [a.tolist() for a in p.cached]
    # the LP relaxation bounds every placement's saving
    assert p.value <= CONTENT_PLACEMENTS.get("lp")(demand, cap, nb, dl).value + 1e-6
    with pytest.raises(ConfigError, match="capacit"):
        place(demand, [1, 1], nb, dl)


def _object_counter(name: str) -> None:
    counter = COUNTERS.get(name)(width=128)
    assert counter.name == name and counter.width == 128
    assert counter(np.zeros((240, 160, 3), np.uint8)) == 0  # nothing in a black frame
    assert counter(np.zeros((48, 64, 3), np.uint8)) == 0  # smaller than a detection window
    again = type(counter)(width=counter.width)  # its configuration builds it again
    assert again.width == counter.width and again(np.zeros((240, 128, 3), np.uint8)) == 0
    with pytest.raises(Exception, match="uint8 BGR frame"):
        counter(np.zeros((48, 64), np.float32))


def _task_kind(name: str) -> None:
    kind = _scenario(task={"kind": name}).task.task_kind()
    assert kind.name == name and type(kind)(**kind.options()) == kind  # config round-trips
    rng = np.random.default_rng(0)
    shape = (3, 8)
    x = rng.normal(size=(12, *shape)).astype(np.float32)
    y = (np.arange(12) % 2).astype(kind.label_dtype)  # two classes, values, or normal/anomaly
    out = rng.normal(size=(12, kind.outputs(2, shape))).astype(np.float32)
    xt, ot = torch.from_numpy(x), torch.from_numpy(out).requires_grad_()
    loss = kind.loss(ot, kind.target(xt, torch.from_numpy(y)))
    loss.backward()
    assert loss.ndim == 0 and np.isfinite(float(loss)) and ot.grad is not None
    pred = kind.predict(out, x)
    assert len(pred) == 12
    fitted = kind.fit(pred[:6], y[:6])  # validation half
    figures = fitted.evaluate(pred[6:], y[6:])
    assert kind.metric in figures and all(np.isfinite(v) for v in figures.values())
    base_name, base_value = fitted.best_baseline(y[:6], y[6:])
    assert base_name in fitted.baselines(y[:6], y[6:]) and np.isfinite(base_value)
    assert fitted.agree(pred, pred).all() and fitted.agree(pred, pred).shape == (12,)
    line = fitted.summary(figures, (base_name, base_value))
    assert kind.metric in line and "\n" not in line


def _task_plot(name: str) -> None:
    kind = _scenario(task={"kind": name}).task.task_kind()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3, 8)).astype(np.float32)
    y = (np.arange(24) % 2).astype(kind.label_dtype)
    pred = kind.predict(rng.normal(size=(24, kind.outputs(2, (3, 8)))), x)
    fitted = kind.fit(pred[:12], y[:12])  # validation half
    figs = task_figures(fitted, pred[12:], y[12:], ["a", "b"])
    assert figs and all(isinstance(f, TaskFigure) and f.title and f.caption for f in figs)
    assert all(f.figure.axes for f in figs)


def _section(name: str, results: dict[str, Any]) -> None:
    spec = SECTIONS.get(name)
    assert spec.name == name and isinstance(spec.order, int) and spec.title
    assert SectionSpec(**dataclasses.asdict(spec)) == spec
    assert name in results, f"no tiny results for section {name!r}"
    ctx = RenderContext(results)
    html = str(spec.render(results[name], [], ctx))
    assert "<table" in html and "Traceback" not in html


def _runtime(name: str, tmp_path: Path) -> None:
    from edgeintel.errors import MissingExtraError
    from edgeintel.inference.runtimes.base import ExportSource, get_runtime, predict_all
    from edgeintel.models import export_onnx

    rt = get_runtime(name)
    assert rt.name == name and rt.suffix.startswith(".") and dataclasses.replace(rt) == rt
    with pytest.raises(ConfigError, match="exports precisions"):
        rt.check_precision("fp16")
    model = build_model("mlp", (3, 32), 3, width=4, seed=0).eval()
    onnx_path = tmp_path / "fp32.onnx"
    export_onnx(model, (3, 32), onnx_path, ["a", "b", "c"])
    x = np.random.default_rng(0).normal(size=(5, 3, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    source = ExportSource(onnx_path, (3, 32), model)
    for precision in rt.precisions[:1]:  # int8 per runtime: tests/inference/test_runtimes.py
        try:
            artifact = rt.export(source, tmp_path / precision, precision, x)
        except MissingExtraError as exc:  # not installed here: one line naming the extra
            assert "\n" not in str(exc) and "edgeintel[" in str(exc)
            return
        assert artifact.suffix == rt.suffix and rt.size_bytes(artifact) > 0
        out = predict_all(rt.load(artifact), x)
        assert out.shape == (5, 3) and np.isfinite(out).all()
        if precision == "fp32":
            np.testing.assert_allclose(out, ref, atol=1e-4)


def _correction(name: str) -> None:
    p = np.array([0.04, 0.5, 0.2])
    q = CORRECTIONS.get(name)(p)
    assert 0.0 <= q <= 1.0 and q >= float(p.min())  # never below the smallest p-value


def _drift_detector(name: str) -> None:
    rng = np.random.default_rng(0)
    det = DRIFT_DETECTORS.get(name)(DriftConfig())
    ref = rng.normal(size=(400, 3))
    det.fit(ref, rng)
    same, shifted = rng.normal(size=(100, 3)), rng.normal(loc=3.0, size=(100, 3))
    if det.source == "output":  # confidences in [0, 1]
        det.fit(rng.uniform(0.8, 1.0, size=400), rng)
        same, shifted = rng.uniform(0.8, 1.0, size=100), rng.uniform(0.3, 0.5, size=100)
    assert det.score(shifted) > det.score(same)


def _rollout_guard(name: str) -> None:
    from edgeintel.runtime.guards import GUARDS, GuardLimits, VersionSample

    def sample(correct: int, ms: float, errors: int = 0) -> VersionSample:
        s = VersionSample()
        for i in range(400):
            s.add({"error": i < errors, "label": int(i < correct), "truth": 1, "latency_ms": ms})
        return s

    guard, lim = GUARDS.get(name), GuardLimits()
    stable = sample(360, 1.0)
    assert not guard(sample(360, 1.0), stable, lim, 0.05).tripped  # the same: never trips
    bad = guard(sample(100, 5.0, errors=100), stable, lim, 0.05)  # worse on every figure
    assert bad.tripped and bad.reason and json.dumps(bad.to_json())


# --------------------------------------------------------------------------- the contract

CONTRACTS: dict[str, tuple[Registry[Any], Callable[..., None]]] = {
    "datasets": (DATASETS, _dataset),
    "partitioners": (PARTITIONERS, _partitioner),
    "models": (MODELS, _model),
    "aggregators": (AGGREGATORS, _aggregator),
    "attacks": (ATTACKS, _attack),
    "update_compressors": (UPDATE_COMPRESSORS, _update_compressor),
    "server_optimizers": (SERVER_OPTIMIZERS, _algorithm),
    "techniques": (TECHNIQUES, _technique),
    "stages": (STAGES, _stage),
    "split_searches": (SPLITTERS, _split_search),
    "placements": (PLACEMENTS, _placement),
    "cache_policies": (POLICIES, _cache_policy),
    "difference_features": (FEATURES, _difference_feature),
    "object_counters": (COUNTERS, _object_counter),
    "content_placements": (CONTENT_PLACEMENTS, _content_placement),
    "report_sections": (SECTIONS, _section),
    "runtimes": (RUNTIMES, _runtime),
    "task_kinds": (TASKS, _task_kind),
    "task_plots": (TASK_PLOTS, _task_plot),
    "drift_corrections": (CORRECTIONS, _correction),
    "drift_detectors": (DRIFT_DETECTORS, _drift_detector),
    "rollout_guards": (GUARDS, _rollout_guard),
}


def _cases() -> list[Any]:
    out = []
    for kind, (registry, _) in CONTRACTS.items():
        for name in registry:
            slow = kind in ("techniques", "stages") or (
                kind == "datasets" and name in SLOW_DATASETS
            )
            marks = [pytest.mark.slow] if slow else []
            out.append(pytest.param(kind, name, marks=marks, id=f"{kind}:{name}"))
    return out


def test_every_registry_is_covered() -> None:
    """Every Registry object in the package's modules is in CONTRACTS."""
    for info in pkgutil.walk_packages(edgeintel.__path__, "edgeintel."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)  # every module, so no registry hides
    modules = [m for n, m in sorted(sys.modules.items()) if n.startswith("edgeintel.")]
    found = {id(v) for m in modules for v in vars(m).values() if isinstance(v, Registry)}
    assert found == {id(reg) for reg, _ in CONTRACTS.values()}


def _section_results() -> dict[str, Any]:
    """results.json of real tiny runs (tests/report/data), one section of each component, and
    the ``simulation`` section of a tiny ``edgeintel simulate`` run."""
    from .report.test_sections import DATA, tiny_results

    res = tiny_results()
    res["simulation"] = json.loads((DATA / "tiny_sim_results.json").read_text())["simulation"]
    from edgeintel.pipeline.payoff import compute_payoff

    res["payoff"] = compute_payoff(res)  # the payoff of the same tiny runs
    # a real tiny run whose profiles name openvino and executorch (parity on 3 runtimes)
    res["runtimes"] = json.loads((DATA / "tiny_run_runtimes.json").read_text())["runtimes"]
    return res


@pytest.mark.parametrize(("kind", "name"), _cases())
def test_registry_entry_contract(
    kind: str, name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    registry, check = CONTRACTS[kind]
    assert name in registry
    if kind == "techniques":
        check(name, request.getfixturevalue("tiny_cnn"), tmp_path)
    elif kind == "stages":
        check(name, request.getfixturevalue("tiny_run"))
    elif kind == "report_sections":
        check(name, _section_results())
    elif kind == "runtimes":
        check(name, tmp_path)
    else:
        check(name)


def test_unknown_names_list_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"unknown aggregation rule 'nope'; expected one of: "):
        _scenario(training={"aggregation": "nope"})
    with pytest.raises(ConfigError, match=r"data\.partition\.kind: unknown partition kind 'x'"):
        _scenario(data={"partition": {"kind": "x"}})
    with pytest.raises(ConfigError, match=r"settings\.training\.algorithm: unknown federated"):
        _scenario(training={"algorithm": "sgd"})
    with pytest.raises(ConfigError, match=r"data\.dataset: unknown dataset 'cifar'; expected"):
        _scenario(data={"dataset": "cifar"})
    with pytest.raises(ConfigError, match=r"task\.model: unknown model family 'resnet'"):
        _scenario(task={"model": "resnet"})


def test_a_user_registered_rule_can_be_named_in_a_scenario(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Register ``my_rule``, name it in a scenario: it validates and the engine runs it."""
    from edgeintel.training.private import build_private_engine

    calls: list[int] = []

    def my_rule(updates: list[Any], weights: np.ndarray, cfg: AggregationConfig) -> list[Any]:
        calls.append(len(updates))
        return [np.mean([u[i] for u in updates], axis=0) for i in range(len(updates[0]))]

    # registered for this test only (the registry is process-wide)
    monkeypatch.setitem(AGGREGATORS._items, "my_rule", my_rule)
    sc = _scenario(training={"aggregation": "my_rule", "rounds": 1, "k2": 1, "local_steps": 1})
    assert sc.settings.training.aggregation == "my_rule"
    ds = load_data(sc.data, seed=sc.seed)
    from edgeintel.data import train_test_split

    tr, te = train_test_split(ds.y, sc.data.test_fraction, seed=sc.seed)
    parts = partition(ds.y[tr], sc.num_devices, "iid", seed=sc.seed)
    model = build_model(sc.task.model, ds.x.shape[1:], ds.num_classes, sc.task.width, sc.seed)
    engine = build_private_engine(sc, model, ds, tr, te, [tr[p] for p in parts])
    engine.run()
    assert calls, "the user's rule was never called"
