"""The device agent's results carry the task kind's output (a label, a value, a score and its
alarm) and are judged right by the kind's rule; the served model's fitted options (threshold)
come from its metadata record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edgeintel.errors import ConfigError
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.wiring import task_for_model
from edgeintel.tasks import make_task


class _Session:
    """An ONNX Runtime session stand-in: ``fn`` maps the (1, ...) input batch to outputs."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name="x")]

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.fn(feeds["x"])]


def _run(tmp_path: Path, kind: Any, fn: Any, x: np.ndarray, y: np.ndarray) -> tuple[Any, list]:
    with DeviceStore(tmp_path / "d.db") as store:
        agent = DeviceAgent("d", DeviceStream(x, y, 0.0), _Session(fn), store, None, task=kind)
        stats = agent.run(limit=len(x))
        stored = sorted(store.pending(len(x)), key=lambda r: r.seq)  # alarms leave first
        return stats, [r.payload for r in stored]


def test_regression_results_carry_values_judged_within_the_tolerance(tmp_path: Path) -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(4, 1, 1)
    y = np.array([1.2, 2.6, 3.0, 5.0], np.float32)  # |error| 0.2, 0.6, 0, 1
    kind = make_task("regression", tolerance=0.5)
    stats, payloads = _run(tmp_path, kind, lambda b: b.reshape(1, 1), x, y)
    assert [p["value"] for p in payloads] == [1.0, 2.0, 3.0, 4.0]
    assert [p["truth"] for p in payloads] == pytest.approx([1.2, 2.6, 3.0, 5.0])
    assert "label" not in payloads[0]
    assert stats.to_json()["accuracy"] == 0.5  # within 0.5: the first and the third


def test_anomaly_results_carry_the_score_and_the_alarm(tmp_path: Path) -> None:
    x = np.array([0.5, 2.0, 0.1, 1.5], np.float32).reshape(4, 1, 1)
    y = np.array([0, 1, 1, 0])
    kind = make_task("anomaly", threshold=1.0)
    # an autoencoder that outputs zeros: the score is the squared input
    stats, payloads = _run(tmp_path, kind, lambda b: np.zeros((1, 1), np.float32), x, y)
    assert [p["score"] for p in payloads] == pytest.approx([0.25, 4.0, 0.01, 2.25])
    assert [p["alarm"] for p in payloads] == [False, True, False, True]
    # right alarm decisions: normal/normal, anomaly/alarm; a missed anomaly, a false alarm
    assert stats.to_json()["accuracy"] == 0.5


def test_classification_results_keep_their_label(tmp_path: Path) -> None:
    x = np.zeros((2, 1, 3), np.float32)
    stats, payloads = _run(
        tmp_path, None, lambda b: np.array([[0.1, 0.7, 0.2]]), x, np.array([1, 2])
    )
    assert [p["label"] for p in payloads] == [1, 1] and stats.to_json()["accuracy"] == 0.5


def test_the_served_model_brings_its_fitted_threshold(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    record = {"kind": "anomaly", "false_alarm_rate": 0.05, "threshold": 0.37}
    onnx.with_suffix(".json").write_text(json.dumps({"extra": {"task": record}}))
    kind = task_for_model(onnx, make_task("anomaly"))
    assert kind == make_task("anomaly", false_alarm_rate=0.05, threshold=0.37)
    assert task_for_model(tmp_path / "none.onnx", make_task("anomaly")).threshold is None
    with pytest.raises(ConfigError, match=r"trained for the 'anomaly' task kind.*'regression'"):
        task_for_model(onnx, make_task("regression"))


def _server_cache(task: Any) -> Any:
    from edgeintel.caching.settings import ResultCacheSettings
    from edgeintel.runtime.wiring import server_cache

    settings = ResultCacheSettings(k=3, min_votes=3, homogeneity=1.0, max_distance=1.0)
    return server_cache(settings, "edge", clock=lambda: 0.0, task=task)


def _feed(cache: Any, outputs: list[np.ndarray]) -> Any:
    v = np.array([1.0, 0.0], np.float32)
    for i, out in enumerate(outputs):
        cache.put(f"k{i}", {"y": out}, v + 0.01 * i)
    return cache.get("new", v)  # a new input (no exact hit) near the three stored ones


def test_the_server_cache_votes_by_the_kinds_rule() -> None:
    values = [np.array([[20.0]]), np.array([[20.2]]), np.array([[20.4]])]
    assert _feed(_server_cache(None), values) is None  # no kind: three different outputs
    hit = _feed(_server_cache(make_task("regression", tolerance=0.25)), values)
    assert hit is not None and float(hit["y"][0, 0]) == pytest.approx(20.2)  # agrees with all
    # an anomaly score needs the input itself: a neighbour's reconstruction is never reused,
    # although the three reconstructions share their arg-max
    recon = [np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]]), np.array([[0.3, 0.7]])]
    assert _feed(_server_cache(None), recon) is not None  # as labels they agree
    anomaly = _server_cache(make_task("anomaly", threshold=1.0))
    assert _feed(anomaly, recon) is None and anomaly.get("k0") is not None  # exact tier only


def test_the_repository_records_what_the_outputs_mean(tmp_path: Path) -> None:
    from edgeintel.errors import ModelError
    from edgeintel.runtime.repository import MANIFEST, model_task

    (tmp_path / "m").mkdir()
    manifest = tmp_path / "m" / MANIFEST
    manifest.write_text(json.dumps({"task": {"kind": "regression", "tolerance": 0.3}}))
    assert model_task(tmp_path, "m") == make_task("regression", tolerance=0.3)
    assert model_task(tmp_path, "absent") is None
    manifest.write_text(json.dumps({"task": {"kind": "nope"}}))
    with pytest.raises(ModelError, match="task: expected a registered task kind"):
        model_task(tmp_path, "m")
