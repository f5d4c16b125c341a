"""Command ``compress``: search compression recipes for a scenario, an ONNX model or a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeintel.cli.common import OverwriteOutOpt, console, guard
from edgeintel.errors import EdgeIntelError

__all__ = ["compress_cmd"]


def compress_cmd(
    target: Annotated[
        Path | None, typer.Argument(help="A scenario file (.yaml) or an ONNX model (.onnx).")
    ] = None,
    from_run: Annotated[
        Path | None,
        typer.Option(
            "--from-run",
            help="A run folder: compress its model.onnx for its device profiles, judged on "
            "the run's own held-out split.",
        ),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option("--device", help="Device profile (repeatable); default: all in the scenario."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Bundled dataset for an ONNX model (calibration, accuracy).")
    ] = None,
    recipe: Annotated[
        list[Path] | None, typer.Option("--recipe", help="Recipe YAML/JSON (repeatable).")
    ] = None,
    space: Annotated[str | None, typer.Option(help="Search space: quick or default.")] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            help="metric (the task kind's: accuracy, rmse, auroc), latency or size "
            "(best among feasible candidates)."
        ),
    ] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Budget: latency on device.")] = None,
    max_kb: Annotated[float | None, typer.Option(help="Budget: ONNX file size in KiB.")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Budget: held-out accuracy.")] = None,
    max_metric_drop: Annotated[
        float | None,
        typer.Option(
            help="Budget: largest drop of the task kind's metric from fp32 (its unit; "
            "accuracy 0.01 = one point)."
        ),
    ] = None,
    compute_speed: Annotated[
        float, typer.Option(help="Device speed vs this machine (ONNX input only).")
    ] = 1.0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("compressed"),
    runs: Annotated[int, typer.Option(help="Timed latency runs per candidate.")] = 100,
    threads: Annotated[
        int, typer.Option(help="Threads for training, fine-tuning and calibration.")
    ] = 1,
    overwrite: OverwriteOutOpt = False,
) -> None:
    """Search compression recipes and write the best artifact per device profile."""
    from edgeintel.commands.compress_target import compress_target
    from edgeintel.records import open_run
    from edgeintel.threads import thread_limit

    with guard():
        if (target is None) == (from_run is None):
            raise EdgeIntelError("compress: give a scenario or ONNX file, or --from-run RUN_DIR")
        if from_run is not None:
            open_run(from_run, "--from-run")  # a folder, not a file
        if threads < 1:
            raise EdgeIntelError(f"--threads: expected an integer >= 1, got {threads}")
        with thread_limit(threads):
            outcome = compress_target(
                target if target is not None else from_run,  # type: ignore[arg-type]
                device,
                dataset=dataset,
                recipes=list(recipe or []),
                space=space,
                objective=objective,
                max_latency_ms=max_latency_ms,
                max_kb=max_kb,
                min_accuracy=min_accuracy,
                max_metric_drop=max_metric_drop,
                compute_speed=compute_speed,
                out_dir=out,
                runs=runs,
                on_step=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False),
                overwrite=overwrite,
            )
        for name, choice in outcome.choices.items():
            table = Table(title=f"{name}: Pareto front and verdicts", title_justify="left")
            metric = choice.search.candidates[0].measurement.metric  # the task kind's
            for col in (
                "candidate",
                metric,
                "ms on device",
                "KiB",
                "MMACs",
                "front",
                "verdict",
            ):
                table.add_column(col)
            for r in outcome.rows(name):
                table.add_row(
                    ("* " if r["chosen"] else "") + r["candidate"],
                    f"{r[metric]:.4f}",
                    f"{r['latency_ms']:.4g}",
                    f"{r['kib']:.1f}",
                    f"{r['mmacs']:.3g}",
                    "yes" if r["front"] else "",
                    r["verdict"],
                )
            console.print(table)
            console.print(f"artifact for {name}: {choice.artifact_path}", highlight=False)
        console.print(f"report:  {outcome.report_path}", highlight=False)
