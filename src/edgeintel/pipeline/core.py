"""The run pipeline: ordered, registered stages that share one ``RunContext``.

``edgeintel run`` validates a scenario, then runs every registered stage in
``order`` whose ``enabled(ctx)`` is true. Stages read what earlier stages left
on the context (dataset, partitions, model, ONNX artifact) and write a
JSON-ready section into ``ctx.results`` plus figures for the report. Whatever
happens, ``results.json`` and ``report.html`` are written to ``runs/<run-id>/``
(a failed stage is recorded with its error, earlier sections are kept).

Components never import this package; it sits on top of them. Later
components add a module to ``pipeline/stages/`` with one ``@register_stage`` class and
name its stage in ``STAGES.provide`` below (imported when a stage is first asked for).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from edgeintel.data.datasets import Dataset
from edgeintel.errors import EdgeIntelError, ModelError
from edgeintel.paths import check_run_dir
from edgeintel.pipeline.payoff import compute_payoff
from edgeintel.registry import Registry
from edgeintel.report.environment import machine_info, package_versions
from edgeintel.report.figures import Figure, png_base64, save_figures
from edgeintel.report.topology import topology_json
from edgeintel.scenario import Device, Scenario, dump_scenario
from edgeintel.threads import scenario_threads, thread_limit

if TYPE_CHECKING:
    from edgeintel.data.split import Standardizer
    from edgeintel.models.export import ModelArtifact
    from edgeintel.offloading.scenario_plan import ScenarioPlan
    from edgeintel.pipeline.stages.federated_finetune import DpLedger
    from edgeintel.runtime.wiring import FilterThreshold
    from edgeintel.tasks import TaskKind

__all__ = [
    "STAGES",
    "Figure",
    "Prepared",
    "RunContext",
    "RunResult",
    "Stage",
    "check_run_dir",
    "check_stages",
    "ordered_stages",
    "register_stage",
    "run_pipeline",
    "write_results_json",
]


@dataclass
class RunContext:
    """Everything stages share during one run."""

    scenario: Scenario
    run_dir: Path
    console: Console
    progress: Progress | None = None
    scenario_file: str | None = None
    dataset: Dataset | None = None
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    # validation (selection) and server-held sets: never on a device, never tested on
    val_idx: np.ndarray | None = None
    server_idx: np.ndarray | None = None
    device_parts: list[np.ndarray] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    model: Any = None
    artifact: ModelArtifact | None = None
    results: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    verbose: bool = False
    # typed hand-offs: what a stage leaves for later ones (never read from ``results``)
    # data: the standardiser fitted on what the fitting party holds (None: unscaled) and
    # the split record that export writes into model.json
    standardizer: Standardizer | None = None
    data_split: dict[str, Any] | None = None
    # who trained ``model``: "central", or the edge-training mode that replaced it
    model_source: str = "central"
    # train: the central baseline's final test value of the task kind's headline metric
    # (accuracy, RMSE, AUROC; edge training compares to it)
    central_metric: float | None = None
    # edge training and federated fine-tuning: the run's one DP ledger, and the edge
    # training section's DP record that later phases add their total epsilon to
    dp_ledger: DpLedger | None = None
    edge_dp_record: dict[str, Any] | None = None
    # compress: measured candidates shared between device profiles, and the chosen
    # artifact per profile
    compress_cache: dict[Any, Any] = field(default_factory=dict)
    compressed_artifacts: dict[str, str] = field(default_factory=dict)
    # offloading: the scenario's plan (graph, profile, options) for the runtime stage
    offloading_plan: ScenarioPlan | None = None
    # caching: the filter threshold tuned per device name, for the runtime's agents
    filter_thresholds: dict[str, FilterThreshold] = field(default_factory=dict)
    # caching: edge servers whose result cache stands aside (a lookup costs the model)
    result_cache_aside: set[str] = field(default_factory=set)
    # preflight's untrained model, handed out once by fresh_model
    initial_model: Any = None
    # task_kind's cache: (the model it was fitted for, the fitted kind)
    _fitted_task: tuple[Any, TaskKind] | None = field(default=None, repr=False)

    def task_kind(self) -> TaskKind:
        """The scenario's task kind with what it chooses on validation (the anomaly
        threshold, the default regression tolerance) fitted for the current ``model``, by
        the kind's ``fit`` on the validation split only (never the test split). Components
        ask it how predictions are made, scored and compared (filter, reuse, compression)."""
        kind = self.scenario.task.task_kind()
        if self.model is None:
            return kind
        if self._fitted_task is not None and self._fitted_task[0] is self.model:
            return self._fitted_task[1]
        from edgeintel.models.train import predict_logits

        x_va, y_va = self.val_arrays()
        if len(y_va) == 0:
            raise EdgeIntelError(
                f"the {kind.name} task kind chooses its {kind.metric} settings on a "
                "validation split, but it is empty (raise data.validation_fraction)"
            )
        fitted = kind.fit(kind.predict(predict_logits(self.model, x_va), x_va), y_va)
        self._fitted_task = (self.model, fitted)
        return fitted

    def fresh_model(self) -> Any:
        """The task's untrained model (``task.model``, ``task.width``, seeded by the scenario's
        seed): the one preflight built, the first time, else a new build (the same weights)."""
        if self.initial_model is not None:
            model, self.initial_model = self.initial_model, None
            return model
        from edgeintel.models import build_model

        ds = self.require_dataset()
        sc = self.scenario
        outputs = sc.task.task_kind().outputs(ds.num_classes, ds.sample_shape)
        return build_model(
            sc.task.model,
            ds.sample_shape,
            outputs,
            sc.task.width,
            sc.seed,
            sample_rate_hz=ds.sampling_rate_hz,
        )

    def log(self, message: str) -> None:
        """One line of live feedback: appended to ``run.log``; printed when ``verbose``
        (styled above the progress bars in a terminal, plain otherwise)."""
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        with (self.run_dir / "run.log").open("a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")
        if self.verbose:
            if self.console.is_terminal:
                self.console.print(f"[dim]{stamp}[/] {message}", highlight=False)
            else:
                self.console.out(f"{stamp} {message}", highlight=False)

    @property
    def seed(self) -> int:
        return self.scenario.seed

    def require_dataset(self) -> Dataset:
        if self.dataset is None or self.train_idx is None or self.test_idx is None:
            raise EdgeIntelError("this stage needs the data stage to run first")
        return self.dataset

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ds = self.require_dataset()
        assert self.train_idx is not None
        return ds.x[self.train_idx], ds.y[self.train_idx]

    def test_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ds = self.require_dataset()
        assert self.test_idx is not None
        return ds.x[self.test_idx], ds.y[self.test_idx]

    def val_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation split (selection), carved from the training data, off the devices."""
        ds = self.require_dataset()
        idx = self.val_idx if self.val_idx is not None else np.empty(0, dtype=np.int64)
        return ds.x[idx], ds.y[idx]

    def server_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The server-held set (``data.server_fraction``; may be empty)."""
        ds = self.require_dataset()
        idx = self.server_idx if self.server_idx is not None else np.empty(0, dtype=np.int64)
        return ds.x[idx], ds.y[idx]

    def device_arrays(self, device: int) -> tuple[np.ndarray, np.ndarray]:
        """Training samples held by device ``device`` (index into ``devices``)."""
        ds = self.require_dataset()
        idx = self.device_parts[device]
        return ds.x[idx], ds.y[idx]

    def device_inputs(self, device: int) -> tuple[np.ndarray, np.ndarray]:
        """What device ``device`` sends at inference time (its shard as ``data.stream``), as
        its agent derives it (``RunData.device_inputs``)."""
        from edgeintel.data.device_data import shuffled_stream, stream_inputs

        st = self.scenario.data.stream
        x, y = self.device_arrays(device)
        shuffle = shuffled_stream(self.require_dataset())
        return stream_inputs(
            x, y, (st.frames_per_sample, st.noise, self.scenario.seed, shuffle), device
        )

    def add_figure(self, section: str, title: str, fig: Any, caption: str = "") -> None:
        """Store a matplotlib figure (closed afterwards) for the report."""
        self.figures.append(Figure(section, title, png_base64(fig), caption))

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Any]:
        """A rich progress bar; yields ``advance(n=1)`` (a no-op when quiet)."""
        if self.progress is None:
            yield lambda n=1: None
            return
        tid = self.progress.add_task(description, total=total)
        try:
            yield lambda n=1: self.progress.advance(tid, n) if self.progress else None
        finally:
            self.progress.update(tid, completed=total if total is not None else 1, total=total or 1)


class Stage:
    """Base class of pipeline stages: set ``name``, ``order``, ``title``; implement ``run``."""

    name: ClassVar[str]
    order: ClassVar[int]
    title: ClassVar[str] = ""

    def enabled(self, ctx: RunContext) -> bool:
        return True

    def run(self, ctx: RunContext) -> None:
        raise NotImplementedError


STAGES: Registry[type[Stage]] = Registry("pipeline stage")
# the built-in stages: importing the ``pipeline.stages`` package registers them all
STAGES.provide(
    "edgeintel.pipeline.stages",
    *("data", "train", "edge_train", "export", "evaluate", "offloading", "compress"),
    *("caching", "runtime"),
)


@dataclass
class Prepared:
    """What preflight computed that a run takes over instead of computing it again.

    ``data``: the context after the data stage (dataset, splits, device shards, the
    standardizer and split record, the data section and its figure);
    ``data_s``: seconds that stage took; ``model``: the untrained model preflight built.
    """

    data: RunContext
    data_s: float
    model: Any = None

    def hand_over(self, ctx: RunContext) -> None:
        """Put the data stage's outputs and the untrained model on the run's ``ctx``."""
        d = self.data
        ctx.dataset, ctx.train_idx, ctx.test_idx = d.dataset, d.train_idx, d.test_idx
        ctx.val_idx, ctx.server_idx = d.val_idx, d.server_idx
        ctx.device_parts, ctx.devices = list(d.device_parts), list(d.devices)
        ctx.standardizer, ctx.data_split = d.standardizer, d.data_split
        ctx.results["data"] = d.results["data"]
        ctx.figures.extend(d.figures)
        ctx.initial_model = self.model
        for message in d.results["data"].get("warnings", []):  # logged to preflight's scratch
            ctx.log(f"data: warning: {message}")


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: add a stage to the pipeline under ``cls.name``."""
    STAGES.add(cls.name, cls)
    return cls


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results.json"

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report.html"


def _new_run_id(scenario: Scenario) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{scenario.name}"


def _unique_run_dir(runs_dir: Path, base: str) -> Path:
    """Create and return ``runs_dir/base`` or, if taken (two runs in one second),
    ``base-2``, ``base-3``, ...; ``mkdir`` without ``exist_ok`` makes it race-free."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        cand = runs_dir / (base if n == 1 else f"{base}-{n}")
        try:
            cand.mkdir()
        except FileExistsError:
            continue
        return cand
    raise EdgeIntelError(f"{runs_dir}: no free run folder named {base}-N")


def _claim_run_dir(
    runs_dir: str | Path, run_id: str | None, scenario: Scenario, overwrite: bool
) -> Path:
    """The run folder, created; never silently reuses a folder that holds an earlier run."""
    import shutil

    check_run_dir(runs_dir, run_id, overwrite)
    base = Path(runs_dir)
    if run_id is None:
        return _unique_run_dir(base, _new_run_id(scenario))
    run_dir = base / run_id
    if run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)  # overwrite was asked for (check_run_dir refused otherwise)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def check_stages(only: list[str] | None) -> None:
    """Refuse unknown stage names (a ``ConfigError`` listing the stages), importing nothing."""
    for n in only or []:
        STAGES.check(n)


def ordered_stages(only: list[str] | None = None) -> list[Stage]:
    """Instances of the registered stages in run order (optionally only the named ones)."""
    names = STAGES.names() if only is None else only
    for n in names:
        STAGES.get(n)  # raises a ConfigError listing known stages
    return sorted((STAGES.get(n)() for n in names), key=lambda s: (s.order, s.name))


def run_pipeline(
    scenario: Scenario,
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
    console: Console | None = None,
    stages: list[str] | None = None,
    show_progress: bool = False,
    scenario_file: str | None = None,
    overwrite: bool = False,
    prepared: Prepared | None = None,
) -> RunResult:
    """Run the stages on ``scenario`` and write ``results.json`` and ``report.html``.

    Prints nothing unless ``show_progress``: then progress bars (in a terminal)
    and one line per stage and per training round/epoch (plain lines when the
    output is not a terminal). The same lines always go to ``run.log`` in the run
    folder, and ``results.json`` is rewritten after every stage, so a long run
    can be followed and a crash loses nothing finished.
    Raises the first stage's ``EdgeIntelError`` after writing the partial results
    (``status: failed``; ``interrupted`` on Ctrl-C). A ``run_id`` whose folder already
    holds files is refused unless ``overwrite`` (its old files are then removed first).
    ``prepared`` (from ``preflight`` on this same scenario object) replaces the data stage's
    work and the first model build by what preflight already computed.
    """
    from edgeintel.report.html import write_report

    console = console or Console(quiet=not show_progress)
    plan = ordered_stages(stages)  # unknown stage names fail before a run folder is made
    run_dir = _claim_run_dir(runs_dir, run_id, scenario, overwrite)
    scenario_json = dump_scenario(scenario)
    scenario_hash = hashlib.sha256(json.dumps(scenario_json, sort_keys=True).encode()).hexdigest()[
        :16
    ]
    results: dict[str, Any] = {
        "run_id": run_dir.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "running",
        "error": None,
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "seed": scenario.seed,
            "file": scenario_file,
            "hash": scenario_hash,
            "devices": scenario.num_devices,
            "edge_servers": len(scenario.edge_servers),
            "topology": topology_json(scenario),
        },
        "machine": machine_info(),
        "versions": package_versions(),
        "stages": [],
        "timings_s": {},
    }
    ctx = RunContext(
        scenario=scenario,
        run_dir=run_dir,
        console=console,
        scenario_file=scenario_file,
        results=results,
        verbose=show_progress,
    )
    (run_dir / "scenario.json").write_text(json.dumps(scenario_json, indent=2))
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not (show_progress and console.is_terminal),
    )
    error: BaseException | None = None
    results_path = run_dir / "results.json"
    with progress:
        ctx.progress = progress if show_progress and console.is_terminal else None
        ctx.log(f"run {run_dir.name}: scenario {scenario.name}, seed {scenario.seed}")
        for stage in plan:
            if not stage.enabled(ctx):
                continue
            if stage.name == "data" and prepared is not None and prepared.data.scenario is scenario:
                prepared.hand_over(ctx)
                results["stages"].append(stage.name)
                results["timings_s"][stage.name] = round(prepared.data_s, 3)
                ctx.log(f"stage data taken over from preflight ({prepared.data_s:.1f} s)")
                continue
            ctx.log(f"stage {stage.name} started")
            t0 = time.perf_counter()
            try:
                with thread_limit(scenario_threads(scenario)):  # restored after each stage
                    stage.run(ctx)
            except BaseException as exc:
                if isinstance(exc, SystemExit):  # user code (a model's forward) called exit
                    exc = ModelError(
                        f"stage {stage.name}: user code called sys.exit({exc.code!r}); a model "
                        "factory or forward() must return or raise, not exit"
                    )
                error = exc
                results["status"] = (
                    "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                )
                results["error"] = f"stage {stage.name}: {exc}"
                results["stages"].append(stage.name)
                results["timings_s"][stage.name] = round(time.perf_counter() - t0, 3)
                ctx.log(f"stage {stage.name} FAILED: {exc}")
                break
            results["stages"].append(stage.name)
            results["timings_s"][stage.name] = round(time.perf_counter() - t0, 3)
            ctx.log(f"stage {stage.name} done in {results['timings_s'][stage.name]:.1f} s")
            write_results_json(results_path, results)  # a crash later loses nothing finished
    if error is None:
        results["status"] = "completed"
    st = scenario.settings
    results["payoff"] = compute_payoff(
        results, str(st.offloading.objective), float(st.training.central_tolerance)
    )
    result = RunResult(run_dir, results)
    write_results_json(result.results_path, results)
    save_figures(run_dir, ctx.figures)
    if ctx.train_idx is not None and ctx.test_idx is not None:
        # the held-out split, so `edgeintel compress --from-run` judges on the same samples
        np.savez(run_dir / "split.npz", train_idx=ctx.train_idx, test_idx=ctx.test_idx)
    write_report(result.report_path, results, ctx.figures)
    ctx.log(f"run {results['status']}: {result.results_path}, {result.report_path}")
    if error is not None:
        raise error
    return result


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_results_json(path: Path, data: dict[str, Any]) -> None:
    """Write a results.json atomically (numpy values as JSON numbers): a crash mid-write
    never leaves a truncated results file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_default))
    tmp.replace(path)
