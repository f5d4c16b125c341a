"""Differential privacy, secure aggregation and checkpoint/resume for the embedded engine.

:class:`PrivacyStrategy` plugs into :class:`edgeintel.training.engine.FederatedEngine`
through its ``Strategy`` seam:

- **DP** (``dp``): at every device-level aggregator (the cloud of flat FL, each edge
  server of HierFAVG) updates are clipped and averaged with equal weights and Gaussian
  noise is added (:mod:`edgeintel.training.dp`); one aggregation step (a flat round or
  one HierFAVG edge round) is accounted once — edge servers hold disjoint devices, so
  their mechanisms compose in parallel. The cloud of HierFAVG only post-processes noisy
  edge models. Before each round the strategy checks the budget (``target_epsilon``);
  the engine stops (or warns) before a round would exceed it.
- **Secure aggregation** (``secagg``): each aggregator runs one masking session over its
  devices (:mod:`edgeintel.training.secagg`) and learns only their (weighted) sum; with
  DP the devices clip their own updates and the aggregator adds noise to the sum
  (fixed clipping). Robust rules (Krum, median, ...) need individual updates and are
  refused, as are lossy compressors (masks are dense ring elements).
- **Checkpoints** (``checkpoints``): after every round the engine's whole state (model,
  server-optimizer state, error-feedback residuals, history, strategy state with the
  accountant) is saved atomically; :func:`resume_engine` continues from the last one.
  The engine draws every random number from ``(seed, round, ...)``, so a resumed run
  ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from edgeintel.errors import ConfigError, DataError
from edgeintel.threads import scenario_threads
from edgeintel.training.aggregate import AggregationConfig, AggregationRule, weighted_mean
from edgeintel.training.checkpoint import Checkpoint, CheckpointStore, scenario_hash
from edgeintel.training.dp import ClipMode, DifferentialPrivacy, DPConfig, clip_update
from edgeintel.training.engine import FederatedEngine
from edgeintel.training.rounds import ClientSpec, EngineState, Tier
from edgeintel.training.secagg import SecAggConfig, secure_aggregate
from edgeintel.training.strategy import AggregationContext, Strategy

if TYPE_CHECKING:
    from edgeintel.data.datasets import Dataset
    from edgeintel.scenario import Scenario
    from edgeintel.training.settings import TrainingMode

__all__ = [
    "PrivacyStrategy",
    "build_private_engine",
    "engine_checkpoint",
    "privacy_strategy",
    "privacy_summary",
    "restore_engine",
    "resume_engine",
    "state_checkpoint",
]

log = logging.getLogger(__name__)


class PrivacyStrategy(Strategy):
    """Engine strategy adding DP, secure aggregation and per-round checkpoints.

    ``population``: devices the engine samples from; ``clients_per_round``: devices
    sampled per (edge) round (``None``: all); ``steps_per_round``: aggregation steps per
    round (``k2`` for HierFAVG, else 1); ``secagg_dropout``: probability that a device
    drops out after masking inside a secure-aggregation session (recovered from shares).
    """

    def __init__(
        self,
        aggregation: AggregationConfig | None = None,
        *,
        dp: DPConfig | None = None,
        secagg: SecAggConfig | None = None,
        population: int = 1,
        clients_per_round: int | None = None,
        steps_per_round: int = 1,
        secagg_dropout: float = 0.0,
        checkpoints: CheckpointStore | None = None,
        scenario_hash: str = "",
    ) -> None:
        super().__init__(aggregation)
        if population < 1:
            raise ConfigError(f"population must be >= 1, got {population}")
        if not 0 <= secagg_dropout < 0.5:
            raise ConfigError(f"secagg_dropout must be in [0, 0.5), got {secagg_dropout}")
        if secagg is not None and self.aggregation.rule not in (
            AggregationRule.FEDAVG,
            str(AggregationRule.FEDAVG),
        ):
            raise ConfigError(
                f"secure aggregation reveals only the sum; aggregation rule "
                f"{self.aggregation.rule!r} needs individual updates (use fedavg)"
            )
        if secagg is not None and dp is not None and dp.clipping is ClipMode.ADAPTIVE:
            raise ConfigError("secure aggregation with DP supports fixed clipping only")
        self.dp = DifferentialPrivacy(dp, population) if dp is not None else None
        self.secagg = secagg
        self.population = population
        self.sampled = min(clients_per_round or population, population)
        self.steps_per_round = steps_per_round
        self.secagg_dropout = secagg_dropout
        self.checkpoints = checkpoints
        self.scenario_hash = scenario_hash
        self.epsilon_history: list[dict[str, float]] = []
        self.secagg_history: list[dict[str, float]] = []
        self._step: tuple[int, int] | None = None
        self._round_secagg: dict[str, float] = {}
        if self.dp is not None:
            self.dp.check_budget(self.sampled, steps_per_round)

    # -- device side -------------------------------------------------------
    def client_update(self, update: np.ndarray, client: ClientSpec, round: int) -> np.ndarray:
        if self.dp is not None and self.secagg is not None:
            # The aggregator cannot clip masked updates: devices clip their own.
            clipped, _ = clip_update([update], self.dp.clip_norm)
            return clipped[0]
        return update

    # -- aggregator side -----------------------------------------------------
    def aggregate(
        self, updates: list[np.ndarray], weights: np.ndarray, ctx: AggregationContext
    ) -> np.ndarray:
        if ctx.tier is Tier.CLOUD:  # HierFAVG cloud: averages (already private) edge models
            return weighted_mean([[u] for u in updates], weights)[0]
        first_of_step = self._step != (ctx.round, ctx.sub_round)
        self._step = (ctx.round, ctx.sub_round)
        if self.secagg is not None:
            return self._secure(updates, weights, ctx, first_of_step)
        if self.dp is not None:
            mean, _ = self.dp.aggregate(
                [[u] for u in updates], ctx.rng, self.sampled, account=first_of_step
            )
            return mean[0]
        return super().aggregate(updates, weights, ctx)

    def _secure(
        self,
        updates: list[np.ndarray],
        weights: np.ndarray,
        ctx: AggregationContext,
        first_of_step: bool,
    ) -> np.ndarray:
        assert self.secagg is not None
        n = len(updates)
        if n < 2:
            raise DataError(
                f"round {ctx.round}: secure aggregation at {ctx.node} needs >= 2 devices, got {n}"
            )
        dropped: list[int] = []
        if self.secagg_dropout > 0:
            k = int(np.floor(self.secagg_dropout * n))
            dropped = sorted(int(i) for i in ctx.rng.choice(n, size=k, replace=False))
        w = [1.0] * n if self.dp is not None else [float(x) for x in weights]
        total, wsum, res = secure_aggregate([[u] for u in updates], w, self.secagg, dropped)
        for key, val in (
            ("bytes_up", res.bytes_up),
            ("bytes_down", res.bytes_down),
            ("plain_bytes_up", res.plain_bytes_up),
            ("seconds", res.client_seconds + res.server_seconds),
            ("dropped", len(res.dropped)),
        ):
            self._round_secagg[key] = self._round_secagg.get(key, 0.0) + float(val)
        if self.dp is not None:
            if first_of_step:
                self.dp.account(self.sampled)
            count = len(res.survivors)
            return self.dp.noise_and_mean(
                total[0], count, self.dp.clip_norm, ctx.rng, num_sampled=self.sampled
            )
        if not wsum > 0:
            raise DataError(f"round {ctx.round}: zero total weight at {ctx.node}")
        return (total[0] / wsum).astype(np.float32)

    # -- round control -----------------------------------------------------
    def should_continue(self, state: EngineState) -> bool:
        """False when the privacy budget does not allow another round."""
        if self.dp is None:
            return True
        return self.dp.next_round_allowed(self.sampled, self.steps_per_round)

    def on_round_end(self, state: EngineState) -> None:
        r = state.round
        if self.dp is not None:
            self.epsilon_history.append(
                {
                    "round": r,
                    "epsilon": self.dp.accountant.epsilon(),
                    "clip_norm": self.dp.clip_norm,
                }
            )
        if self.secagg is not None:
            self.secagg_history.append({"round": r, **self._round_secagg})
            self._round_secagg = {}
        state.strategy_state = self.state_dict()
        if self.checkpoints is not None:
            self.checkpoints.save(state_checkpoint(state, self.scenario_hash))

    def state_dict(self) -> dict[str, Any]:
        return {
            "dp": self.dp.state() if self.dp is not None else None,
            "epsilon_history": list(self.epsilon_history),
            "secagg_history": list(self.secagg_history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if (state.get("dp") is None) != (self.dp is None):
            raise DataError("checkpoint and settings disagree on whether DP is on")
        if self.dp is not None:
            self.dp.load_state(state["dp"])
        self.epsilon_history = list(state.get("epsilon_history", []))
        self.secagg_history = list(state.get("secagg_history", []))


# --------------------------------------------------------------------------- checkpoints


def engine_checkpoint(engine: FederatedEngine, scenario_hash: str = "") -> Checkpoint:
    """The engine's full state as a :class:`Checkpoint` (arrays + JSON meta)."""
    engine.state.strategy_state = engine.strategy.state_dict()
    return state_checkpoint(engine.state, scenario_hash)


def state_checkpoint(state: EngineState, scenario_hash: str = "") -> Checkpoint:
    """An engine state (strategy state included) as a :class:`Checkpoint`."""
    st = state.to_dict()
    arrays: dict[str, np.ndarray] = {"weights": st["weights"]}
    arrays.update({f"server/{k}": v for k, v in st["server_state"].items()})
    arrays.update({f"residual/{k}": v for k, v in st["residuals"].items()})
    arrays.update({f"momentum/{k}": v for k, v in st["momenta"].items()})
    if st["best_weights"] is not None:  # the validation-best round, the one exported
        arrays["best_weights"] = st["best_weights"]
    meta = {
        "history": st["history"],
        "step_ms": st["step_ms"],
        "strategy_state": st["strategy_state"],
        "best_round": st["best_round"],
        "best_val": st["best_val"],
    }
    return Checkpoint(round=int(st["round"]), arrays=arrays, meta=meta, scenario_hash=scenario_hash)


def restore_engine(engine: FederatedEngine, ckpt: Checkpoint) -> None:
    """Load a checkpoint into ``engine`` (shape mismatches raise a ``DataError``)."""
    arrays = dict(ckpt.arrays)
    if "weights" not in arrays:
        raise DataError("checkpoint holds no model weights")
    try:
        state = {
            "round": ckpt.round,
            "weights": arrays["weights"],
            "server_state": {
                k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("server/")
            },
            "residuals": {
                k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("residual/")
            },
            "momenta": {
                k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("momentum/")
            },
            "history": ckpt.meta["history"],
            "step_ms": ckpt.meta.get("step_ms"),
            "strategy_state": ckpt.meta.get("strategy_state", {}),
            "best_round": ckpt.meta.get("best_round"),
            "best_val": ckpt.meta.get("best_val"),
            "best_weights": arrays.get("best_weights"),
        }
    except KeyError as exc:
        raise DataError(f"checkpoint meta lacks {exc}") from None
    engine.load_state_dict(state)


def resume_engine(engine: FederatedEngine, store: CheckpointStore, scenario_hash: str = "") -> int:
    """Restore the newest checkpoint in ``store`` (if any); returns the round resumed from.

    A damaged or mismatched checkpoint raises; training never silently starts over.
    """
    ckpt = store.load_latest(scenario_hash or None)
    if ckpt is None:
        return 0
    restore_engine(engine, ckpt)
    strategy = engine.strategy
    if isinstance(strategy, PrivacyStrategy) and strategy.dp is not None:
        strategy.dp.check_budget(strategy.sampled, strategy.steps_per_round)
    log.info("resumed from %s (round %d)", store.latest_path(), ckpt.round)
    return ckpt.round


# --------------------------------------------------------------------------- scenario


def training_hash(scenario: Scenario) -> str:
    """Hash of what a checkpoint depends on: the scenario minus ``rounds`` and ``checkpoint_dir``
    (so a finished run can be extended by raising ``rounds``)."""
    data = scenario.model_dump(mode="json")
    training = data["settings"]["training"]
    training.pop("rounds", None)
    training.pop("checkpoint_dir", None)
    return scenario_hash(data)


def privacy_strategy(scenario: Scenario, config: Any, population: int) -> PrivacyStrategy:
    """The engine strategy for a scenario's ``settings.training`` (dp, secure_aggregation,
    checkpoint_dir); ``config`` is the engine's ``FederatedConfig``."""
    t = scenario.settings.training
    dp = None
    if t.dp is not None:
        dp = DPConfig(
            noise_multiplier=t.dp.noise_multiplier,
            clip_norm=t.dp.clip_norm,
            clipping=ClipMode(t.dp.clipping),
            target_quantile=t.dp.target_quantile,
            clip_lr=t.dp.clip_lr,
            target_epsilon=t.dp.target_epsilon,
            target_delta=t.dp.target_delta,
            on_budget=t.dp.on_budget,  # type: ignore[arg-type]
            reproducible_noise=t.dp.reproducible_noise,
        )
    sec = None
    dropout = 0.0
    if t.secure_aggregation is not None:
        sec = SecAggConfig(
            scale_bits=t.secure_aggregation.scale_bits,
            threshold=t.secure_aggregation.threshold,
            neighbors=t.secure_aggregation.neighbors,
            ring_bits=t.secure_aggregation.ring_bits,
        )
        dropout = t.secure_aggregation.dropout
    store = CheckpointStore(Path(t.checkpoint_dir)) if t.checkpoint_dir is not None else None
    return PrivacyStrategy(
        config.aggregation,
        dp=dp,
        secagg=sec,
        population=population,
        clients_per_round=config.clients_per_round,
        steps_per_round=config.k2,
        secagg_dropout=dropout,
        checkpoints=store,
        scenario_hash=training_hash(scenario),
    )


def build_private_engine(
    scenario: Scenario,
    model: nn.Module,
    dataset: Dataset,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    device_parts: Sequence[np.ndarray],
    mode: TrainingMode | None = None,
    overrides: dict[str, object] | None = None,
    checkpoints: bool = True,
    val_idx: np.ndarray | None = None,
) -> FederatedEngine:
    """``scenario_train.build_engine`` with the scenario's DP / secure aggregation /
    checkpoint strategy, resumed from ``checkpoint_dir`` when it holds a checkpoint.

    ``overrides`` replaces training settings (as in ``build_engine``); ``checkpoints=False``
    neither saves nor resumes (e.g. for a reference run beside the main one); ``val_idx``:
    the validation split the exported round is chosen on.
    """
    from edgeintel.training.scenario_train import build_engine, federated_config, resolve_mode

    mode = mode or resolve_mode(scenario)
    settings = scenario.settings.training
    if overrides:
        settings = settings.model_copy(update=overrides)
    cfg = federated_config(settings, mode, scenario.seed, threads=scenario_threads(scenario))
    population = sum(1 for p in device_parts if len(p) > 0)
    strategy = privacy_strategy(scenario, cfg, max(population, 1))
    if not checkpoints:
        strategy.checkpoints = None
    engine = build_engine(
        scenario, model, dataset, train_idx, test_idx, device_parts, mode=mode,
        strategy=strategy, overrides=overrides, val_idx=val_idx,
    )  # fmt: skip
    if strategy.checkpoints is not None:
        resume_engine(engine, strategy.checkpoints, strategy.scenario_hash)
    return engine


def privacy_summary(engine: FederatedEngine) -> dict[str, Any] | None:
    """JSON results of DP / secure aggregation / checkpoints for the report (None if unused)."""
    strat = engine.strategy
    if not isinstance(strat, PrivacyStrategy):
        return None
    if strat.dp is None and strat.secagg is None and strat.checkpoints is None:
        return None
    out: dict[str, Any] = {}
    if strat.dp is not None:
        cfg = strat.dp.config
        rounds_run = engine.state.round
        out["dp"] = {
            "noise_multiplier": cfg.noise_multiplier,
            "clipping": str(cfg.clipping),
            "clip_norm_final": round(strat.dp.clip_norm, 6),
            "delta": cfg.target_delta,
            "target_epsilon": cfg.target_epsilon,
            "epsilon": round(strat.dp.accountant.epsilon(), 6),
            "sampling_rate": strat.dp.sampling_rate(strat.sampled),
            "stopped_by_budget": rounds_run < engine.config.rounds,
            "epsilon_vs_round": [
                {"round": int(e["round"]), "epsilon": round(float(e["epsilon"]), 6)}
                for e in strat.epsilon_history
            ],
            "accountant": "dp-accounting RDP, fixed-size sampling without replacement "
            "(replace-one, sensitivity 2C)",
            "noise_source": "seeded (reproducible simulation, not private)"
            if cfg.reproducible_noise
            else "OS entropy",
            "sampling_source": "OS entropy (secret sample)"
            if engine.config.secret_sampling
            else (
                "every device, every round"
                if engine.config.clients_per_round is None
                or engine.config.clients_per_round >= len(engine.available)
                else "seeded (reproducible simulation, not private)"
            ),
        }
    if strat.secagg is not None:
        hist = strat.secagg_history
        out["secure_aggregation"] = {
            "scale_bits": strat.secagg.scale_bits,
            "threshold": strat.secagg.threshold,
            "dropout_after_masking": strat.secagg_dropout,
            "protocol_bytes_up": int(sum(h.get("bytes_up", 0) for h in hist)),
            "protocol_bytes_down": int(sum(h.get("bytes_down", 0) for h in hist)),
            "plain_bytes_up": int(sum(h.get("plain_bytes_up", 0) for h in hist)),
            "seconds": round(sum(h.get("seconds", 0.0) for h in hist), 3),
            "recovered_dropouts": int(sum(h.get("dropped", 0) for h in hist)),
        }
    if strat.checkpoints is not None:
        latest = strat.checkpoints.latest_path()
        out["checkpoint"] = {"dir": str(strat.checkpoints.directory), "latest": str(latest)}
    return out
