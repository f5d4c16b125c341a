"""Checkpoints: atomic round trip, RNG continuation, corruption and mismatch detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeintel.errors import DataError
from edgeintel.training.checkpoint import (
    Checkpoint,
    CheckpointStore,
    load_checkpoint,
    save_checkpoint,
    scenario_hash,
)


def _ckpt(round_: int = 3) -> Checkpoint:
    rng = np.random.default_rng(7)
    rng.normal(size=5)
    arrays = {
        "model/0": np.arange(6, dtype=np.float32).reshape(2, 3),
        "model/1": np.ones(2),
        "residual/dev-3/0": np.full(4, 0.5, dtype=np.float32),
    }
    meta = {
        "rng": dict(rng.bit_generator.state),
        "accountant": {"delta": 1e-5, "history": [[0.1, 1.0]]},
    }
    return Checkpoint(round=round_, arrays=arrays, meta=meta, scenario_hash="abc123")


def test_round_trip_and_rng_continues(tmp_path: Path) -> None:
    ck = _ckpt()
    path = save_checkpoint(tmp_path / "a.ckpt", ck)
    back = load_checkpoint(path, expected_scenario_hash="abc123")
    assert back.round == 3 and back.scenario_hash == "abc123"
    model = [back.arrays["model/0"], back.arrays["model/1"]]
    np.testing.assert_array_equal(model[0], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert model[0].dtype == np.float32 and set(back.arrays) == set(ck.arrays)
    rng = np.random.default_rng(7)
    rng.normal(size=5)
    bg = np.random.PCG64()
    bg.state = dict(back.meta["rng"])
    np.testing.assert_array_equal(np.random.Generator(bg).normal(size=4), rng.normal(size=4))
    assert back.meta["accountant"]["history"] == [[0.1, 1.0]]
    assert not list(tmp_path.glob("*.tmp"))  # no temp file left behind


def test_store_keeps_latest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=2)
    assert store.load_latest() is None
    for r in range(1, 5):
        store.save(_ckpt(r))
    assert [p.name for p in store.paths()] == ["round-000003.ckpt", "round-000004.ckpt"]
    latest = store.load_latest("abc123")
    assert latest is not None and latest.round == 4


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b"garbage" + b[7:], "not an edgeintel checkpoint"),
        (lambda b: b[:-10], "truncated"),
        (lambda b: b[:-3] + bytes(x ^ 0xFF for x in b[-3:]), "corrupt"),
        (lambda b: b[:20], "corrupt header|truncated"),
    ],
)
def test_corrupt_checkpoint_is_an_error(tmp_path: Path, damage, match: str) -> None:  # type: ignore[no-untyped-def]
    path = save_checkpoint(tmp_path / "c.ckpt", _ckpt())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=match):
        load_checkpoint(path)
    store = CheckpointStore(tmp_path)
    (tmp_path / "round-000001.ckpt").write_bytes(path.read_bytes())
    with pytest.raises(DataError):  # never silently starting over
        store.load_latest()


def test_mismatched_scenario_is_an_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.ckpt", _ckpt())
    with pytest.raises(DataError, match="another scenario"):
        load_checkpoint(path, expected_scenario_hash="zzz")
    with pytest.raises(DataError, match="cannot read"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_scenario_hash_is_canonical() -> None:
    assert scenario_hash({"a": 1, "b": [1, 2]}) == scenario_hash({"b": [1, 2], "a": 1})
    assert scenario_hash({"a": 1}) != scenario_hash({"a": 2})
