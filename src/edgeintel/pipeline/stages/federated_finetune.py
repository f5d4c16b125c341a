"""Federated fine-tuning of compressed models after edge training (issue 8, section 1).

After federated or hierarchical training no device sample may be fitted on
centrally. The ``compress`` stage therefore hands every fine-tuning step of a
recipe (QAT, fine-tuning after structured / unstructured pruning, low-rank
factorisation or compact layers) to :class:`FederatedFinetuner`: it builds the
scenario's own engine (``training.private.build_private_engine``: same devices,
shards, mode, local steps, robust rule, attack, DP and secure aggregation) around
the compressed model and runs ``settings.inference.compress.finetune_rounds``
rounds over the device shards. The engine evaluates on the validation split.

One privacy budget covers training and fine-tuning: the edge-training stage leaves
its DP state (clip norm, accountant history) in ``ctx.dp_ledger`` (a ``DpLedger``); each
fine-tuning run starts its accountant from it and writes the composed state back,
so every fine-tuned candidate is accounted (they are all released to selection) and
the epsilon reported after compression covers training plus all fine-tuning. With
``dp.target_epsilon`` and ``on_budget: stop`` fine-tuning stops where the budget ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.inference.base import CompressContext, FinetuneMixin
from edgeintel.pipeline.core import RunContext
from edgeintel.training.dp import PrivacyAccountant
from edgeintel.training.engine import FederatedEngine
from edgeintel.training.private import PrivacyStrategy, build_private_engine
from edgeintel.training.scenario_train import resolve_mode

__all__ = ["DpLedger", "FederatedFinetuner", "dp_ledger_epsilon", "save_dp_ledger"]

log = logging.getLogger(__name__)


@dataclass
class DpLedger:
    """The run's one privacy ledger: the DP state to continue from (clip norm, accountant
    history), delta, and per phase its aggregation steps and the epsilon after it."""

    state: dict[str, Any]
    delta: float
    phases: list[dict[str, Any]] = field(default_factory=list)


def save_dp_ledger(
    ctx: RunContext, engine: FederatedEngine, phase: str, compose: bool = False
) -> None:
    """Keep the engine's DP state (if DP is on) as the run's one privacy ledger.

    ``compose=False``: the engine continued the ledger (its accountant holds every step
    so far). ``compose=True``: the engine ran on the same devices with its own fresh
    accountant (the clean reference run beside an attacked one): its steps are added.
    """
    strat = engine.strategy
    if not isinstance(strat, PrivacyStrategy) or strat.dp is None:
        return
    state = strat.dp.state()
    ledger = ctx.dp_ledger
    if compose and ledger is not None:
        before = ledger.state
        history = before["accountant"]["history"] + state["accountant"]["history"]
        state = {**before, "accountant": {**before["accountant"], "history": history}}
    accountant = PrivacyAccountant.from_state(state["accountant"])
    if ledger is None:
        ledger = ctx.dp_ledger = DpLedger(state, strat.dp.config.target_delta)
    ledger.state = state
    ledger.delta = strat.dp.config.target_delta
    ledger.phases.append(
        {
            "phase": phase,
            "aggregation_steps": len(accountant.history)
            - sum(p["aggregation_steps"] for p in ledger.phases),
            "epsilon_after": round(accountant.epsilon(), 6),
        }
    )


def dp_ledger_epsilon(ctx: RunContext) -> float | None:
    """Epsilon of everything accounted in the run so far (None without DP)."""
    ledger = ctx.dp_ledger
    if ledger is None or not ledger.phases:
        return None
    return float(ledger.phases[-1]["epsilon_after"])


class FederatedFinetuner:
    """A ``CompressContext.finetuner``: fine-tune a compressed model in federated rounds.

    ``rounds``: cloud rounds per fine-tuning step. ``runs`` records each call
    (technique-agnostic: rounds done, validation accuracy after, epsilon after).
    """

    def __init__(self, ctx: RunContext, rounds: int) -> None:
        if rounds < 1:
            raise ConfigError(f"federated fine-tuning needs rounds >= 1, got {rounds}")
        if ctx.train_idx is None or not ctx.device_parts:
            raise ConfigError("federated fine-tuning needs the data stage's device shards")
        self.ctx = ctx
        self.rounds = rounds
        self.runs: list[dict[str, Any]] = []

    def __call__(self, model: nn.Module, cfg: FinetuneMixin, cctx: CompressContext) -> list[float]:
        ctx = self.ctx
        sc = ctx.scenario
        ds = ctx.require_dataset()
        assert ctx.train_idx is not None and ctx.test_idx is not None
        # per-round accuracy on the validation split (the test split stays for the report)
        eval_idx = ctx.val_idx if ctx.val_idx is not None and len(ctx.val_idx) else ctx.test_idx
        mode = resolve_mode(sc)
        engine = build_private_engine(
            sc, model, ds, ctx.train_idx, eval_idx, ctx.device_parts, mode,
            overrides={"rounds": self.rounds}, checkpoints=False,
        )  # fmt: skip
        strat = engine.strategy
        ledger = ctx.dp_ledger
        if isinstance(strat, PrivacyStrategy) and strat.dp is not None and ledger is not None:
            # one budget: continue the accountant (and adaptive clip norm) of edge training
            strat.dp.load_state(ledger.state)
        engine.run()
        engine.global_model()  # the engine wraps ``model``: load the final weights into it
        model.eval()
        hist = engine.state.history
        label = f"fine-tuning {len(self.runs) + 1}"
        save_dp_ledger(ctx, engine, label)
        self.runs.append(
            {
                "run": len(self.runs) + 1,
                "params": engine.dim,
                "rounds": len(hist),
                "stopped_by_budget": len(hist) < self.rounds,
                # the task kind's headline metric (accuracy, rmse, auroc) on validation
                f"validation_{engine.task.metric}": None if not hist else hist[-1].accuracy,
                "uplink_MB": round(sum(r.bytes["device_to_edge"] for r in hist) / 1e6, 4),
                "epsilon_after": dp_ledger_epsilon(ctx),
            }
        )
        ctx.log(
            f"compress: federated fine-tuning over device shards, {len(hist)} rounds"
            + ("" if not hist or hist[-1].accuracy is None else
               f", validation {engine.task.label()} {hist[-1].accuracy:.4g}")
        )  # fmt: skip
        return [float(r.loss) for r in hist if r.loss is not None and np.isfinite(r.loss)]
