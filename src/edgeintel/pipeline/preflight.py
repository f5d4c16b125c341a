"""Preflight: resolve everything a scenario names before any training is spent.

``edgeintel validate``, ``run``, ``train`` and ``compress`` call ``preflight``
after the schema check. It runs the real ``data`` stage on a scratch context
(so it loads, checks, splits and partitions exactly as the run will), builds
the model (a user factory is imported and its output shape checked on the
dataset's sample shape), builds the edge-training engine with the scenario's
DP / secure-aggregation strategy (DP budget feasibility) and checks that every
aggregation the engine will do has enough updates for its robust rule (Krum's
n > 2f + 2, trimmed mean's n > 2f), plans solo training within each device
profile's memory, and expands the compression search space. Any problem
raises an ``EdgeIntelError`` whose message is one line naming the field.
Nothing is trained. What it computed (the data stage's outputs, the untrained model)
comes back as ``PreflightReport.prepared`` for ``run_pipeline`` to take over.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from edgeintel.errors import ConfigError, EdgeIntelError
from edgeintel.pipeline.core import Prepared, RunContext, ordered_stages
from edgeintel.scenario import Scenario, TrainingMode

__all__ = ["PreflightReport", "preflight"]

_MAX_ROUNDS_CHECKED = 10_000
"""Rounds whose device sampling is replayed for the robust-rule check (sampling is cheap)."""


@dataclass
class PreflightReport:
    """What preflight resolved: dataset size and shape, model size, training mode."""

    dataset: str
    samples: int
    sample_shape: tuple[int, ...]
    classes: int
    train_samples: int
    test_samples: int
    model_params: int
    mode: str
    notes: list[str] = field(default_factory=list)
    prepared: Prepared | None = field(default=None, repr=False)  # for run_pipeline
    targets: str = ""  # what the data's y holds, in words (empty: "N classes")

    def line(self) -> str:
        """A one-line summary for ``edgeintel validate``."""
        held = self.targets or f"{self.classes} classes"
        return (
            f"data {self.dataset} ({self.samples} samples of shape {list(self.sample_shape)}, "
            f"{held}; {self.train_samples} train / {self.test_samples} test), "
            f"model {self.model_params:,} params, training {self.mode}"
        )


def preflight(
    scenario: Scenario,
    stages: list[str] | None = None,
    scenario_file: str | None = None,
    log: Callable[[str], None] | None = None,
) -> PreflightReport:
    """Check ``scenario`` end to end without training; raise ``EdgeIntelError`` on a problem.

    ``log`` receives a line before each step (data, model, training, compression).
    """
    say = log or (lambda _msg: None)
    say("preflight: importing the components")
    from edgeintel.models import build_model, count_params
    from edgeintel.models.families import check_model_modality
    from edgeintel.pipeline.stages.basic_stages import DataStage
    from edgeintel.training.scenario_train import resolve_mode

    sc = scenario
    chosen = [s.name for s in ordered_stages(stages)]  # unknown stage names -> ConfigError
    say(f"preflight: loading {sc.data.dataset or sc.data.path}, splitting and partitioning")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeintel-preflight-") as tmp:
        ctx = RunContext(
            scenario=sc,
            run_dir=Path(tmp),
            console=Console(quiet=True),
            scenario_file=scenario_file,
        )
        with _named("data"):
            DataStage().run(ctx)
    data_s = time.perf_counter() - t0
    ds = ctx.require_dataset()
    assert ctx.train_idx is not None and ctx.test_idx is not None
    if len(ctx.test_idx) == 0 or len(ctx.train_idx) == 0:
        raise ConfigError(
            f"data.test_fraction: {sc.data.test_fraction} leaves {len(ctx.train_idx)} training "
            f"and {len(ctx.test_idx)} test samples of {len(ds)}; both need at least one"
        )
    say(f"preflight: building {sc.task.model} for inputs {list(ds.sample_shape)}")
    with _named("task.model"):
        check_model_modality(sc.task.model, str(ds.modality), ds.name)
        outputs = sc.task.task_kind().outputs(ds.num_classes, ds.sample_shape)
        model = build_model(
            sc.task.model,
            ds.sample_shape,
            outputs,
            sc.task.width,
            sc.seed,
            sample_rate_hz=ds.sampling_rate_hz,
        )
    mode = resolve_mode(sc)
    report = PreflightReport(
        dataset=ds.name,
        samples=len(ds),
        sample_shape=ds.sample_shape,
        classes=ds.num_classes,
        train_samples=len(ctx.train_idx),
        test_samples=len(ctx.test_idx),
        model_params=count_params(model),
        mode=str(mode),
        prepared=Prepared(ctx, data_s, model),
        targets=_targets_in_words(ds),
    )
    if "edge_train" in chosen and mode in (TrainingMode.FEDERATED, TrainingMode.HIERARCHICAL):
        say(f"preflight: checking {mode} training (privacy, secure aggregation, robust rules)")
        with _named("settings.training"):
            _check_federated(ctx, copy.deepcopy(model), mode, report)
    if "edge_train" in chosen and mode is TrainingMode.SOLO:
        with _named("settings.training"):
            _check_solo(ctx, model)
    if "compress" in chosen and sc.settings.inference.compress.enabled:
        from edgeintel.inference.devices import search_space_for

        say("preflight: expanding the compression search space")
        with _named("settings.inference.compress"):
            search_space_for(sc.settings.inference.compress)
    _check_caching(sc, ds, chosen)
    off = sc.settings.offloading
    if off.enabled and off.profile_file is not None:  # read it now, not after training
        from edgeintel.offloading.profiler import ModelProfile

        try:
            ModelProfile.load(off.profile_file)
        except EdgeIntelError as exc:
            raise ConfigError(f"settings.offloading.profile_file: {exc}") from None
    ee = sc.settings.offloading.early_exit
    if "offloading" in chosen and sc.settings.offloading.enabled and ee is not None and ee.enabled:
        from edgeintel.offloading.early_exit import check_exit_blocks

        check_exit_blocks(model, ee.after_block, list(ee.candidate_blocks))
    _check_checkpoint_dir(sc)
    return report


def _targets_in_words(ds: Any) -> str:
    """``real-valued target NAME (UNIT)`` or ``normal/anomaly labels (K anomalies)``; empty
    for class labels (the report's default ``N classes``)."""
    from edgeintel.data.datasets import Target

    if ds.target is Target.VALUE:
        unit = ds.extra.get("unit")
        return f"real-valued target {', '.join(ds.classes)}" + (f" ({unit})" if unit else "")
    if ds.target is Target.ANOMALY:
        return f"normal/anomaly labels ({int((ds.y != 0).sum())} anomalies)"
    return ""


def _check_caching(sc: Scenario, ds: Any, chosen: list[str]) -> None:
    """The filter's features suit the data (frame features on images, sensor features on
    windows), and a Redis result cache answers at its URL (1 s connect timeout), so a
    run does not fall back on every request and still report "completed"."""
    from edgeintel.data.datasets import Modality
    from edgeintel.errors import FieldError

    cs = sc.settings.caching
    if "caching" in chosen and cs.enabled and cs.filter.enabled:
        try:
            cs.filter.check_modality(images=ds.modality is Modality.IMAGE)
        except FieldError as err:
            where = ".".join(["settings.caching.filter", *map(str, err.loc)])
            raise ConfigError(f"{where}: {err.msg}") from None
    rc = cs.result_cache
    if cs.enabled and rc.enabled and rc.backend == "redis":
        from edgeintel.caching.redis_cache import ping_redis

        with _named("settings.caching.result_cache.redis_url"):
            ping_redis(rc.redis_url, timeout_s=1.0)


@contextmanager
def _named(field: str) -> Iterator[None]:
    """Prefix an error with the scenario field it comes from (unless it names one already)."""
    try:
        yield
    except EdgeIntelError as exc:
        msg = str(exc)
        if msg.startswith((field, "device_profiles", "data.", "task.", "settings.", "/")):
            raise
        if field == "settings.training" and msg.startswith(("dp.", "secure_aggregation")):
            raise type(exc)(f"{field}.{msg}") from None
        raise type(exc)(f"{field}: {msg}") from None


def _check_federated(
    ctx: RunContext, model: Any, mode: TrainingMode, report: PreflightReport
) -> None:
    """Build the engine on ``model`` (a copy: DP budget, secure aggregation) and replay its
    device sampling."""
    from edgeintel.training.aggregate import AggregationConfig, aggregate
    from edgeintel.training.engine import FlMode
    from edgeintel.training.private import build_private_engine

    sc = ctx.scenario
    ds = ctx.require_dataset()
    assert ctx.train_idx is not None and ctx.test_idx is not None
    st = sc.settings.training
    with_data = sum(1 for p in ctx.device_parts if len(p) > 0)
    if st.clients_per_round is not None and st.clients_per_round > with_data:
        raise ConfigError(
            f"settings.training.clients_per_round: {st.clients_per_round} is more than the "
            f"{with_data} devices that hold training data"
        )
    try:
        engine = build_private_engine(
            sc, model, ds, ctx.train_idx, ctx.test_idx, ctx.device_parts, mode, checkpoints=False
        )
    except ArithmeticError as exc:  # the DP accountant on extreme values (OverflowError...)
        raise ConfigError(
            f"settings.training.dp: the privacy accountant cannot evaluate these settings "
            f"({exc.__class__.__name__}); use a noise_multiplier and target_epsilon of "
            "ordinary size"
        ) from None
    cfg = engine.config
    strat = engine.strategy
    dp = getattr(strat, "dp", None)
    if dp is not None and str(dp.config.clipping) == "adaptive":
        # the clipped-count noise (sigma_b = sampled / 20) must exceed z / 2 (Andrew et al.)
        from edgeintel.training.dp import update_noise_multiplier

        sampled = int(strat.sampled)  # type: ignore[attr-defined]
        sigma_b = dp.config.clipped_count_stddev or sampled / 20.0
        try:
            update_noise_multiplier(dp.config.noise_multiplier, sigma_b)
        except ConfigError:
            z = dp.config.noise_multiplier
            raise ConfigError(
                f"settings.training.dp.clipping: adaptive clipping with noise_multiplier {z:g} "
                f"needs more than {10 * z:g} devices sampled per aggregation (its clipped-count "
                f"noise, devices / 20, must exceed noise_multiplier / 2); got {sampled}. Use "
                "fixed clipping, more devices per round or a smaller noise_multiplier"
            ) from None
    if cfg.deadline_s is not None:  # a deadline no device can meet trains nothing
        deadline = engine._compute_deadline()  # measures one local step here
        fastest = min(engine._exchange(i, engine._tier()).time_s for i in engine.available)
        if fastest > deadline:
            raise ConfigError(
                f"settings.training.deadline_s: {deadline:g} s is shorter than every device's "
                f"round (the fastest takes {fastest:.3g} s); no update would ever arrive"
            )
    rule = str(cfg.aggregation.rule)
    if rule in ("fedavg", "norm_clip", "median"):  # any number of updates >= 1 will do
        return
    # the smallest group each aggregator node sees, over the rounds the engine will run
    smallest: dict[str, tuple[int, int]] = {}
    subs = cfg.k2 if cfg.mode is FlMode.HIERARCHICAL else 1
    for r in range(1, min(cfg.rounds, _MAX_ROUNDS_CHECKED) + 1):
        for sub in range(subs):
            groups: dict[str, int] = defaultdict(int)
            for i in engine._sample(r, sub):  # the engine's own sampling, replayed
                node = engine.clients[i].edge if cfg.mode is FlMode.HIERARCHICAL else "cloud"
                groups[node] += 1
            for node, n in groups.items():
                if node not in smallest or n < smallest[node][0]:
                    smallest[node] = (n, r)
    dummy = np.arange(3, dtype=np.float64)
    for node, (n, r) in sorted(smallest.items()):
        f = engine._f(n)
        agg_cfg: AggregationConfig = replace(cfg.aggregation, f=f)
        try:
            aggregate([[dummy * (k + 1)] for k in range(n)], np.ones(n), agg_cfg)
        except EdgeIntelError as exc:
            where = "" if node == "cloud" else f" at edge server {node!r}"
            frac = st.byzantine_fraction
            basis = (
                f"byzantine_fraction {frac}"
                if frac is not None
                else f"malicious_fraction {st.malicious_fraction}"
            )
            raise ConfigError(
                f"settings.training.aggregation: {rule} cannot aggregate the {n} updates of "
                f"round {r}{where} with f={f} ({basis}): {exc}; add devices, raise "
                "clients_per_round or lower the fraction"
            ) from None
    report.notes.append(f"{rule}: smallest aggregation {min(v[0] for v in smallest.values())}")


def _check_solo(ctx: RunContext, model: Any) -> None:
    """Each profile's first device can hold solo training in its memory."""
    import copy

    from edgeintel.training.solo import freeze_all_but_last, plan_solo

    st = ctx.scenario.settings.training
    if st.finetune_layers is not None and (ctx.server_idx is None or len(ctx.server_idx) == 0):
        raise ConfigError(
            "settings.training.finetune_layers: solo fine-tuning starts from a model trained "
            "on the server-held set (the central model saw every device's data); set "
            "data.server_fraction > 0"
        )
    seen: set[str] = set()
    for i, d in enumerate(ctx.devices):
        if d.profile_name in seen or len(ctx.device_parts[i]) == 0:
            continue
        seen.add(d.profile_name)
        m = copy.deepcopy(model)
        if st.finetune_layers is not None:
            try:
                freeze_all_but_last(m, st.finetune_layers)
            except ConfigError as exc:
                raise ConfigError(f"settings.training.{exc}") from None
        x, y = ctx.device_arrays(i)
        try:
            plan_solo(m, x, y, d.profile, st.batch_size, st.epochs, st.lr)
        except ConfigError as exc:
            raise ConfigError(f"device_profiles.{d.profile_name}: {exc}") from None
    if not seen:
        raise ConfigError("settings.training.mode solo: no device holds training data")


def _check_checkpoint_dir(sc: Scenario) -> None:
    d = sc.settings.training.checkpoint_dir
    if d is None:
        return
    p = Path(d)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"settings.training.checkpoint_dir: {p} exists and is not a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"settings.training.checkpoint_dir: {parent} is not a folder")
            break
