"""Commands ``validate``, ``run`` and ``train``: check scenarios, run the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from edgeintel.cli.common import (
    DEFAULT_SCENARIO,
    OverwriteOpt,
    QuietOpt,
    RunIdOpt,
    RunsDirOpt,
    ScenarioArg,
    SeedOpt,
    SetOpt,
    console,
    err_console,
    guard,
    load,
    no_interrupt_traceback,
    run_and_summarize,
)
from edgeintel.errors import EdgeIntelError

__all__ = ["run", "train", "validate"]


def validate(
    files: Annotated[list[Path], typer.Argument(help="One or more scenario files to check.")],
    schema_only: Annotated[
        bool,
        typer.Option(
            "--schema-only", help="Check the file only; do not load data or build the model."
        ),
    ] = False,
    set_: SetOpt = None,
) -> None:
    """Check scenario files: schema, links, files, then (without training) the data, labels,
    partition, model factory and its output shape, DP budget, robust-rule sizes, compression.
    ``--set`` overrides are applied to every file first, as ``run`` applies them."""
    from edgeintel.examples import load_scenario_with
    from edgeintel.pipeline.preflight import preflight

    failed = 0
    for f in files:
        try:
            with no_interrupt_traceback():
                sc = load_scenario_with(f, set_)
                deep = None if schema_only else preflight(sc, scenario_file=str(f))
        except EdgeIntelError as exc:
            msg = str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}"
            err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
            failed += 1
            continue
        console.print(
            f"[green]ok[/] {f}: {sc.num_devices} devices in {len(sc.devices)} group(s), "
            f"{len(sc.edge_servers)} edge server(s), {len(sc.links)} link(s), "
            f"data={sc.data.dataset or sc.data.path}, model={sc.task.model}"
            + ("" if deep is None else f"; {deep.line()}"),
            highlight=False,
        )
    if failed:
        raise typer.Exit(2)


def run(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    runs_dir: RunsDirOpt = Path("runs"),
    run_id: RunIdOpt = None,
    seed: SeedOpt = None,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help="Run only these stages (repeatable); default: all."),
    ] = None,
    quiet: QuietOpt = False,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    address: Annotated[
        list[str] | None,
        typer.Option(
            "--address",
            help="NODE=HOST:PORT where a node of the deployment listens (repeatable).",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Start only these parts of the deployment: 'devices' and/or node names "
            "(repeatable); the others are reached at their --address.",
        ),
    ] = None,
) -> None:
    """Run the main job on a scenario and write runs/<run-id>/results.json and report.html.

    SCENARIO is a YAML file or the name of a shipped scenario (see `edgeintel examples`).
    """
    from edgeintel.examples import resolve_scenario
    from edgeintel.runtime.nodes import deploy_overrides

    with guard():
        scenario = resolve_scenario(scenario)
        sc = load(scenario, seed, [*(set_ or []), *deploy_overrides(address, only)])
        header = (
            f"[bold]edgeintel run[/] {scenario} — {sc.num_devices} devices, "
            f"{len(sc.edge_servers)} edge servers, seed {sc.seed}"
        )
        run_and_summarize(sc, scenario, runs_dir, run_id, stage, quiet, overwrite, header)


def train(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    runs_dir: RunsDirOpt = Path("runs"),
    run_id: RunIdOpt = None,
    seed: SeedOpt = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="Override settings.training.mode: central, solo, federated, hierarchical."
        ),
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Override settings.training.rounds.")] = None,
    quiet: QuietOpt = False,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train on the scenario's devices (solo, federated, or hierarchical device->edge->cloud).

    The trained global model is exported like `run` does: runs/<run-id>/model.onnx +
    model.json (solo mode trains one model per device and exports none).
    """
    from pydantic import ValidationError

    from edgeintel.examples import resolve_scenario
    from edgeintel.scenario import TrainingMode, TrainingSettings
    from edgeintel.training.scenario_train import resolve_mode

    with guard():
        scenario = resolve_scenario(scenario)
        sc = load(scenario, seed, set_)
        over: dict[str, Any] = {}
        if mode is not None:
            over["mode"] = mode
        if rounds is not None:
            over["rounds"] = rounds
        if over:
            raw = {**sc.settings.training.model_dump(exclude_unset=True), **over}
            try:
                ts = TrainingSettings.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "settings.training"
                raise EdgeIntelError(f"--{where}: {err['msg']}") from None
            sc = sc.model_copy(update={"settings": sc.settings.model_copy(update={"training": ts})})
        resolved = resolve_mode(sc)
        stages = ["data", "train"]
        if resolved is not TrainingMode.CENTRAL:
            # solo fine-tuning trains its own base on the server-held set (edge_train)
            stages = ["data", "edge_train"]
        if resolved is not TrainingMode.SOLO:  # solo leaves one model per device, no global one
            stages.append("export")  # the trained model is kept: model.onnx + model.json
        header = (
            f"[bold]edgeintel train[/] {scenario} — {resolved} over {sc.num_devices} devices, "
            f"{len(sc.edge_servers)} edge servers, seed {sc.seed}"
        )
        run_and_summarize(sc, scenario, runs_dir, run_id, stages, quiet, overwrite, header)
