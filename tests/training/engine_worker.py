"""A small real federated run (digits, MLP) used by the privacy tests, in or out of process.

``python engine_worker.py CKPT_DIR OUT.npy ROUNDS [KILL_ROUND]`` trains with DP and
per-round checkpoints, resuming from CKPT_DIR when it holds one, and saves the final flat
weights to OUT.npy. With KILL_ROUND the process SIGKILLs itself in the middle of that
round (after local training, inside aggregation), like a crash.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from edgeintel.data import load_dataset, partition, train_test_split
from edgeintel.models import build_model
from edgeintel.training import ClientSpec, FederatedConfig, FederatedEngine, FlMode, Hop
from edgeintel.training.checkpoint import CheckpointStore
from edgeintel.training.dp import DPConfig
from edgeintel.training.private import PrivacyStrategy, resume_engine
from edgeintel.training.secagg import SecAggConfig


def make_engine(
    n_clients: int = 12,
    per_round: int | None = 6,
    rounds: int = 4,
    dp: DPConfig | None = None,
    secagg: SecAggConfig | None = None,
    hierarchical: bool = False,
    checkpoints: CheckpointStore | None = None,
    secagg_dropout: float = 0.0,
    seed: int = 0,
) -> FederatedEngine:
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=seed)
    parts = partition(ds.y[tr], n_clients, "iid", seed=seed)
    edges = ["e0", "e1"] if hierarchical else ["cloud"]
    clients = [ClientSpec(f"d{i}", edges[i % len(edges)]) for i in range(n_clients)]
    cfg = FederatedConfig(
        mode=FlMode.HIERARCHICAL if hierarchical else FlMode.FEDERATED,
        rounds=rounds,
        clients_per_round=per_round,
        local_steps=5,
        lr=0.1,
        k2=2 if hierarchical else 1,
        seed=seed,
    )
    strategy = PrivacyStrategy(
        cfg.aggregation,
        dp=dp,
        secagg=secagg,
        population=n_clients,
        clients_per_round=per_round,
        steps_per_round=cfg.k2,
        secagg_dropout=secagg_dropout,
        checkpoints=checkpoints,
        scenario_hash="test-scenario",
    )
    model = build_model("mlp", ds.x.shape[1:], ds.num_classes, width=32, seed=seed)
    paths = {e: (Hop(100.0, 5.0),) for e in edges if e != "cloud"}
    return FederatedEngine(
        model,
        ds.x[tr],
        ds.y[tr],
        parts,
        clients,
        ds.x[te],
        ds.y[te],
        cfg,
        num_classes=ds.num_classes,
        edge_paths=paths,
        strategy=strategy,
    )


def main(ckpt_dir: str, out: str, rounds: int, kill_round: int | None = None) -> None:
    store = CheckpointStore(ckpt_dir)
    engine = make_engine(rounds=rounds, checkpoints=store, dp=DPConfig(noise_multiplier=0.5))
    resume_engine(engine, store, "test-scenario")
    if kill_round is not None:
        aggregate = engine.strategy.aggregate

        def crash(updates, weights, ctx):  # type: ignore[no-untyped-def]
            if ctx.round == kill_round:
                os.kill(os.getpid(), signal.SIGKILL)
            return aggregate(updates, weights, ctx)

        engine.strategy.aggregate = crash  # type: ignore[method-assign]
    engine.run()
    np.save(out, engine.state.weights)
    Path(out + ".done").write_text(str(engine.state.round))


if __name__ == "__main__":
    main(
        sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None
    )
