"""DP, secure aggregation and checkpoint/resume inside the embedded federated engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeintel.errors import ConfigError, DataError
from edgeintel.training.aggregate import AggregationConfig
from edgeintel.training.checkpoint import CheckpointStore
from edgeintel.training.dp import DPConfig
from edgeintel.training.private import PrivacyStrategy, resume_engine
from edgeintel.training.secagg import SecAggConfig
from tests.training.engine_worker import make_engine

WORKER = Path(__file__).parent / "engine_worker.py"
SRC = Path(__file__).resolve().parents[2] / "src"


def _run(engine) -> None:  # type: ignore[no-untyped-def]
    engine.run()


def test_dp_engine_reports_epsilon_and_stops_at_budget() -> None:
    from edgeintel.training.dp import epsilon_for

    target = epsilon_for(6, 12, 1.0, 3, 1e-5) + 1e-6  # exactly three rounds fit
    eng = make_engine(rounds=10, dp=DPConfig(noise_multiplier=1.0, target_epsilon=target))
    _run(eng)
    strat = eng.strategy
    assert isinstance(strat, PrivacyStrategy)
    assert eng.state.round == 3  # stopped before the 4th round would exceed the budget
    eps = [e["epsilon"] for e in strat.epsilon_history]
    assert len(eps) == 3 and eps == sorted(eps) and eps[-1] <= target
    assert eps[-1] == pytest.approx(target, rel=1e-6)


def test_hierarchical_dp_accounts_each_edge_round_once() -> None:
    from edgeintel.training.dp import epsilon_for

    eng = make_engine(rounds=2, hierarchical=True, dp=DPConfig(noise_multiplier=1.0))
    _run(eng)
    strat = eng.strategy
    assert isinstance(strat, PrivacyStrategy) and strat.dp is not None
    # 2 cloud rounds x k2=2 edge rounds; both edge servers share each step (parallel).
    assert len(strat.dp.accountant.history) == 4
    assert strat.epsilon_history[-1]["epsilon"] == pytest.approx(epsilon_for(6, 12, 1.0, 4, 1e-5))


@pytest.mark.parametrize("hierarchical", [False, True])
def test_secure_aggregation_matches_plain_engine(hierarchical: bool) -> None:
    plain = make_engine(rounds=2, hierarchical=hierarchical)
    _run(plain)
    sec = make_engine(
        rounds=2, hierarchical=hierarchical, secagg=SecAggConfig(), secagg_dropout=0.0
    )
    _run(sec)
    # Masks cancel exactly; only the 2^-24 fixed-point encoding differs.
    np.testing.assert_allclose(sec.state.weights, plain.state.weights, atol=1e-5)
    hist = sec.strategy.secagg_history  # type: ignore[attr-defined]
    assert len(hist) == 2 and all(h["bytes_up"] > h["plain_bytes_up"] for h in hist)
    assert sec.state.history[-1].accuracy == pytest.approx(
        plain.state.history[-1].accuracy, abs=0.01
    )


def test_secure_aggregation_recovers_dropouts_after_masking() -> None:
    eng = make_engine(rounds=1, per_round=8, secagg=SecAggConfig(), secagg_dropout=0.25)
    _run(eng)
    hist = eng.strategy.secagg_history  # type: ignore[attr-defined]
    assert hist[0]["dropped"] == 2
    assert eng.state.history[-1].accuracy is not None


def test_secure_dp_engine_runs() -> None:
    eng = make_engine(rounds=2, secagg=SecAggConfig(), dp=DPConfig(noise_multiplier=0.5))
    _run(eng)
    assert len(eng.strategy.epsilon_history) == 2  # type: ignore[attr-defined]


def test_bad_combinations() -> None:
    with pytest.raises(ConfigError, match="needs individual updates"):
        PrivacyStrategy(AggregationConfig(rule="median"), secagg=SecAggConfig(), population=10)
    with pytest.raises(ConfigError, match="fixed clipping only"):
        PrivacyStrategy(secagg=SecAggConfig(), dp=DPConfig(clipping="adaptive"), population=10)
    with pytest.raises(ConfigError, match="already exceeded by a single round"):
        PrivacyStrategy(dp=DPConfig(noise_multiplier=0.3, target_epsilon=0.5), population=10)


@pytest.mark.slow
def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    rounds = 5

    def worker(ckpt: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(WORKER), str(ckpt), str(out), str(rounds), *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    ref = worker(tmp_path / "ck-ref", tmp_path / "ref.npy")
    assert ref.returncode == 0, ref.stderr[-2000:]
    crashed = worker(tmp_path / "ck", tmp_path / "out.npy", "3")
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # SIGKILL mid-round 3
    store = CheckpointStore(tmp_path / "ck")
    assert store.latest_path() is not None and store.latest_path().name == "round-000002.ckpt"  # type: ignore[union-attr]
    assert not (tmp_path / "out.npy").exists()
    resumed = worker(tmp_path / "ck", tmp_path / "out.npy")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "out.npy.done").read_text() == str(rounds)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.load(tmp_path / "ref.npy"))


def test_resume_refuses_corrupt_or_foreign_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    eng = make_engine(rounds=1, checkpoints=store)
    _run(eng)
    path = store.latest_path()
    assert path is not None
    fresh = make_engine(rounds=2, checkpoints=store)
    with pytest.raises(DataError, match="another scenario"):
        resume_engine(fresh, store, "some-other-scenario")
    assert resume_engine(fresh, store, "test-scenario") == 1
    np.testing.assert_array_equal(fresh.state.weights, eng.state.weights)
    raw = path.read_bytes()
    path.write_bytes(raw[:-50])
    with pytest.raises(DataError, match="truncated"):
        resume_engine(make_engine(rounds=2), store, "test-scenario")
    # DP on in the checkpoint but off in the settings (or vice versa) is refused.
    path.write_bytes(raw)
    with pytest.raises(DataError, match="disagree on whether DP"):
        resume_engine(make_engine(rounds=2, dp=DPConfig()), store, "test-scenario")
