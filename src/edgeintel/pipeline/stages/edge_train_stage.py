"""The ``edge_train`` stage: solo, federated or hierarchical training on the scenario's devices.

Runs after the central baseline (order 30). Federated and hierarchical modes
train with the embedded engine over the scenario topology; the global model of the
round best on the validation split (held by the cloud, never on a device; ties keep
the earlier round) replaces ``ctx.model`` so the export and evaluation stages measure
what the devices would deploy. When the scenario configures an attack, a clean
reference run with the same settings is trained too (accuracy under attack).
Solo mode trains one device of each profile alone within its memory budget,
optionally fine-tuning the last layers of a model trained on the server-held set
(never the central baseline, which saw every device's data).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from edgeintel.data.provenance import SERVER_SET, chance_accuracy, compare_to_central
from edgeintel.errors import ConfigError, TrainingError
from edgeintel.models.train import TrainConfig, evaluate_task, train_model
from edgeintel.network import TIERS
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.pipeline.sections import training_section as _section  # noqa: F401  (registers the section)
from edgeintel.pipeline.stages.federated_finetune import dp_ledger_epsilon, save_dp_ledger
from edgeintel.pipeline.stages.privacy_report import report_privacy
from edgeintel.report import plots
from edgeintel.scenario import TrainingMode
from edgeintel.tasks import TaskKind
from edgeintel.training.engine import FederatedEngine
from edgeintel.training.private import build_private_engine
from edgeintel.training.scenario_train import resolve_mode
from edgeintel.training.solo import train_solo

__all__ = ["EdgeTrainStage"]


def compare_metric(
    kind: TaskKind, value: float | None, central: float | None, y_train: Any, y_test: Any
) -> dict[str, Any]:
    """Edge vs central baseline vs the kind's best trivial baseline (fitted on the training
    targets, scored on the test split), in the kind's headline metric: ``gap_to_central``
    = how much worse the edge model is (``TaskKind.drop``; > 0 worse); a warning when the
    edge model does not beat the trivial baseline."""
    name, base = kind.best_baseline(y_train, y_test)
    m = kind.metric
    out: dict[str, Any] = {
        f"baseline_{m}": base,
        "baseline": name,
        f"central_{m}": central,
        "gap_to_central": None,
        "warnings": [],
    }
    if value is None:
        return out
    if not kind.better(value, base):
        out["warnings"].append(
            f"edge-trained {kind.label()} {value:.4g} does not beat the best trivial baseline "
            f"({name}, {base:.4g}): edge training learned little"
        )
    if central is not None:
        out["gap_to_central"] = round(kind.drop(central, value), 6)
    return out


def _compare(ctx: RunContext, section: dict[str, Any], value: float | None) -> None:
    """Add the trivial baseline (a classifier's chance level) and the gap to the central
    baseline, in the task kind's metric, to the summary; warn if poor."""
    _, y_te = ctx.test_arrays()
    central = ctx.central_metric
    kind = ctx.scenario.task.task_kind()
    section.update(metric=kind.metric, higher_is_better=kind.higher_is_better)
    if kind.metric == "accuracy":  # today's figures: chance = the test split's majority class
        cmp = compare_to_central(value, central, chance_accuracy(y_te))
    else:
        cmp = compare_metric(kind, value, central, ctx.train_arrays()[1], y_te)
    warnings = cmp.pop("warnings")
    section["summary"].update(cmp)
    if warnings:
        section["warnings"] = warnings
        for w in warnings:
            ctx.console.print(f"[yellow]warning:[/] {w}")


def _run_engine(ctx: RunContext, engine: FederatedEngine, label: str) -> None:
    total = engine.config.rounds
    t0 = time.perf_counter()

    def on_round(rec: Any) -> None:
        advance()
        done = max(len(engine.state.history), 1)
        eta = (time.perf_counter() - t0) / done * max(total - done, 0)
        acc = "n/a" if rec.accuracy is None else f"{rec.accuracy:.4g}"
        ctx.log(
            f"{label}: round {rec.round}/{total} {engine.task.label()} {acc}, "
            f"{sum(rec.bytes.values()) / 1e6:.3g} MB sent, ETA {eta:.0f} s"
        )

    with ctx.task(label, total=total) as advance:
        engine.run(on_round=on_round)


def _selected_metric(ctx: RunContext, engine: FederatedEngine, round_: int) -> float | None:
    """The test value of the kind's headline of round ``round_``'s global model: its round
    record's, or measured now when that round was not evaluated (``eval_every``)."""
    hist = engine.state.history
    if 1 <= round_ <= len(hist) and hist[round_ - 1].accuracy is not None:
        return hist[round_ - 1].accuracy
    x_te, y_te = ctx.test_arrays()
    return evaluate_task(engine.selected_model()[0], x_te, y_te, engine.task).get(
        engine.task.metric
    )


def _val_curve(hist: list[Any]) -> dict[str, list[float]]:
    """The validation curve the exported round is chosen on (empty without one)."""
    if all(r.val_metric is None for r in hist):
        return {}
    return {"validation (selects the round)": [
        float("nan") if r.val_metric is None else r.val_metric for r in hist
    ]}  # fmt: skip


def _solo_base(ctx: RunContext, cfg: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """The model solo devices fine-tune from: trained on the server-held set only.

    The central baseline saw the pooled training split, i.e. every device's data, so
    fine-tuning it on a device would leak the others' samples into its model.
    """
    sc = ctx.scenario
    ctx.require_dataset()
    x_s, y_s = ctx.server_arrays()
    if len(y_s) == 0:
        raise ConfigError(
            "settings.training.finetune_layers: solo fine-tuning starts from a model trained "
            "on the server-held set (the central model saw every device's data); set "
            "data.server_fraction > 0"
        )
    model = ctx.fresh_model()
    x_te, y_te = ctx.test_arrays()
    kind = sc.task.task_kind()
    with ctx.task("solo base model on the server-held set (epochs)", total=1) as advance:
        train_model(model, x_s, y_s, cfg, seed=sc.seed, task=kind)
        advance()
    info = {
        "trained_on": SERVER_SET,
        "samples": len(y_s),
        "epochs": cfg.epochs,
        f"test_{kind.metric}": evaluate_task(model, x_te, y_te, kind).get(kind.metric),
        "why": "devices fine-tune the last layers of a model that saw no device's data",
    }
    ctx.log(f"solo: base model trained on {len(y_s)} server-held samples")
    return model, info


@register_stage
class EdgeTrainStage(Stage):
    name = "edge_train"
    order = 30
    title = "Edge training"

    def enabled(self, ctx: RunContext) -> bool:
        return resolve_mode(ctx.scenario) is not TrainingMode.CENTRAL

    def run(self, ctx: RunContext) -> None:
        mode = resolve_mode(ctx.scenario)
        if mode is TrainingMode.SOLO:
            self._solo(ctx)
        else:
            self._federated(ctx, mode)

    # ----------------------------------------------------------------- federated

    def _federated(self, ctx: RunContext, mode: TrainingMode) -> None:
        sc = ctx.scenario
        ds = ctx.require_dataset()
        train_idx, test_idx = ctx.train_idx, ctx.test_idx
        if train_idx is None or test_idx is None:
            raise ConfigError("the edge_train stage needs the data stage to run first")
        st = sc.settings.training

        def engine(overrides: dict[str, Any] | None = None) -> FederatedEngine:
            model = ctx.fresh_model()
            # DP / secure aggregation / checkpoints from settings.training (issue 5);
            # only the main run checkpoints and resumes.
            return build_private_engine(
                sc, model, ds, train_idx, test_idx, ctx.device_parts, mode,
                overrides=overrides, checkpoints=overrides is None, val_idx=ctx.val_idx,
            )  # fmt: skip

        eng = engine()
        _run_engine(ctx, eng, f"{mode} training (rounds)")
        if eng.state.history and not any(r.aggregated for r in eng.state.history):
            raise TrainingError(
                f"{mode} training: no device update was aggregated in any of the "
                f"{len(eng.state.history)} rounds (every sampled device dropped out or missed "
                "the deadline); the model is untrained. Lower settings.training.dropout or "
                "relax the deadline"
            )
        clean = None
        if st.attack is not None:
            clean = engine({"attack": None, "malicious_fraction": 0.0})
            _run_engine(ctx, clean, "clean reference (rounds)")
        chosen, sel = eng.selected_model()
        ctx.model = copy.deepcopy(chosen)
        ctx.model_source = str(mode)
        hist = eng.state.history
        kind = eng.task
        m, label = kind.metric, kind.label()
        rounds = [r.round for r in hist]
        acc = [float("nan") if r.accuracy is None else r.accuracy for r in hist]
        final = _selected_metric(ctx, eng, sel)
        n_val = 0 if eng.y_val is None else len(eng.y_val)
        cum = {t: np.cumsum([r.bytes[t] for r in hist]).tolist() for t in TIERS}
        cfg = eng.config
        section: dict[str, Any] = {
            "mode": str(mode),
            "summary": {
                # the exported model's test value of the kind's headline (accuracy, rmse)
                f"final_{m}": final,
                "selected_round": sel,
                "selected_on": (
                    f"validation split ({n_val} samples held by the cloud, never on a device)"
                    if n_val
                    else "last round (no validation split)"
                ),
                f"last_round_{m}": hist[-1].accuracy,
                "rounds": len(hist),
                "uplink_MB": cum["device_to_edge"][-1] / 1e6,
                "edge_to_cloud_MB": cum["edge_to_cloud"][-1] / 1e6,
            },
            "config": {
                "algorithm": str(cfg.server.algorithm),
                "server_lr": cfg.server.server_lr,
                "clients_per_round": cfg.clients_per_round,
                "local_steps": cfg.local_steps,
                "local_epochs": cfg.local_epochs,
                "client_lr": cfg.lr,
                "k2": cfg.k2,
                "compressor": str(cfg.compressor.name),
                "aggregation": str(cfg.aggregation.rule),
                "attack": None if cfg.attack is None else str(cfg.attack.name),
                "malicious_fraction": None if cfg.attack is None else cfg.attack.fraction,
                "step_ms": eng.state.step_ms,
            },
            "params": eng.dim,
            "devices_without_data": eng.no_data,
            "malicious_devices": int(eng.malicious.sum()),
            "history": [r.to_json() for r in hist],
            "bytes_total": {t: int(cum[t][-1]) for t in TIERS},
        }
        central = ctx.central_metric
        ctx.add_figure(
            "edge_training", f"{label[0].upper()}{label[1:]} vs round",
            plots.round_curve(rounds, {f"{mode} global model": acc, **_val_curve(hist)},
                              baseline=central,
                              ylabel=f"test {label}",
                              chance=1.0 / ds.num_classes if m == "accuracy" else None),
            f"{mode} training: held-out test {label} of the global model after each "
            f"{'cloud ' if mode is TrainingMode.HIERARCHICAL else ''}round (round {sel}, "
            "best on validation, is exported)"
            + (", against the central baseline trained on all the data." if central is not None
               else "."),
        )  # fmt: skip
        ctx.add_figure(
            "edge_training", "Bytes per link tier vs round",
            plots.line_chart(
                rounds, {t: [max(v, 1) for v in cum[t]] for t in TIERS if cum[t][-1] > 0},
                "round", "cumulative bytes", logy=True,
            ),
            "Exact serialized bytes sent on each tier, cumulative; the device->edge uplink "
            + ("carries uncompressed updates." if cfg.compressor.name == "none"
               else f"carries {cfg.compressor.name}-compressed updates."),
        )  # fmt: skip
        if clean is not None:
            ch = clean.state.history
            clean_sel = clean.selected_model()[1]
            clean_final = _selected_metric(ctx, clean, clean_sel)
            section["clean_reference"] = {
                f"final_{m}": clean_final,
                "selected_round": clean_sel,
                "history": [r.to_json() for r in ch],
            }
            section["summary"][f"clean_{m}"] = clean_final
            ctx.add_figure(
                "edge_training", f"{label[0].upper()}{label[1:]} under attack",
                plots.line_chart(
                    rounds,
                    {f"{cfg.attack.name if cfg.attack else ''} + {cfg.aggregation.rule}": acc,
                     "no attack": [float("nan") if r.accuracy is None else r.accuracy for r in ch]},
                    "round", f"test {label}",
                ),
                f"{section['malicious_devices']} malicious devices; aggregation "
                f"{cfg.aggregation.rule} vs the same run without attack.",
            )  # fmt: skip
        _compare(ctx, section, final)
        ctx.results["edge_training"] = section
        report_privacy(ctx, eng, section="edge_training")
        # the run's one DP budget: federated fine-tuning in `compress` continues it
        save_dp_ledger(ctx, eng, "edge training")
        dp = section.get("privacy", {}).get("dp")
        if isinstance(dp, dict):
            ctx.edge_dp_record = dp  # compress adds the epsilon with fine-tuning to it
        if clean is not None:  # the clean reference also trained on the devices' data
            save_dp_ledger(ctx, clean, "clean reference run", compose=True)
            if isinstance(dp, dict):
                dp["epsilon_with_clean_reference"] = dp_ledger_epsilon(ctx)

    # ----------------------------------------------------------------- solo

    def _solo(self, ctx: RunContext) -> None:
        sc = ctx.scenario
        ctx.require_dataset()
        st = sc.settings.training
        x_te, y_te = ctx.test_arrays()
        kind = sc.task.task_kind()
        m, label = kind.metric, kind.label()
        cfg = st.central_config()
        base = None
        base_info: dict[str, Any] | None = None
        if st.finetune_layers is not None:
            base, base_info = _solo_base(ctx, cfg)
        firsts: dict[str, int] = {}
        for i, d in enumerate(ctx.devices):
            if len(ctx.device_parts[i]) and d.profile_name not in firsts:
                firsts[d.profile_name] = i
        per_device: dict[str, Any] = {}
        with ctx.task("solo training (devices)", total=len(firsts)) as advance:
            for prof, i in firsts.items():
                dev = ctx.devices[i]
                x, y = ctx.device_arrays(i)
                model = copy.deepcopy(base) if base is not None else ctx.fresh_model()
                res = train_solo(
                    model, x, y, dev.profile, cfg, sc.seed, st.finetune_layers,
                    task=kind,
                )  # fmt: skip
                per_device[dev.name] = {
                    "profile": prof,
                    "samples": len(y),
                    "plan": res.plan.to_json(),
                    f"test_{m}": evaluate_task(model, x_te, y_te, kind).get(m),
                    "train_accuracy": res.history[-1].train_accuracy,
                }
                advance()
        accs = [v[f"test_{m}"] for v in per_device.values()]
        section: dict[str, Any] = {
            "mode": "solo",
            "summary": {f"mean_test_{m}": float(np.mean(accs)), "devices": len(per_device)},
            "finetune_layers": st.finetune_layers,
            "devices": per_device,
        }
        if base_info is not None:
            section["base_model"] = base_info
        _compare(ctx, section, float(np.mean(accs)))
        ctx.results["edge_training"] = section
        ctx.add_figure(
            "edge_training", "Solo training per device",
            plots.bar_chart(list(per_device), accs, ylabel=f"test {label}"),
            "One device per profile trained alone on its own data (global test set).",
        )  # fmt: skip
