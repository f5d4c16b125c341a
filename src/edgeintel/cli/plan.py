"""Command ``plan``: the offloading plan of a scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeintel.cli.common import (
    DEFAULT_SCENARIO,
    OverwriteOpt,
    RunIdOpt,
    RunsDirOpt,
    ScenarioArg,
    SeedOpt,
    console,
    guard,
    load,
)

__all__ = ["plan"]


def plan(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    model: Annotated[
        Path | None,
        typer.Option(help="Plan this ONNX model (default: the scenario's task model, untrained)."),
    ] = None,
    objective: Annotated[
        str | None, typer.Option(help="latency, energy or weighted (settings.offloading).")
    ] = None,
    deadline_ms: Annotated[float | None, typer.Option(help="Deadline per request (ms).")] = None,
    placement: Annotated[
        str | None, typer.Option(help="auto, milp, greedy or brute_force.")
    ] = None,
    split_after: Annotated[
        str | None, typer.Option(help="Also execute the cut after this ONNX node.")
    ] = None,
    device_node: Annotated[
        list[str] | None,
        typer.Option("--device-node", help="Also execute a cut running these nodes on the device."),
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    run_id: RunIdOpt = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Decide where each device's inference runs; print the per-device plan and write it."""
    from edgeintel.offloading.command import plan_command

    with guard():
        sc = load(scenario, seed)
        outcome = plan_command(
            sc,
            runs_dir=runs_dir,
            run_id=run_id,
            model=model,
            overrides={"objective": objective, "deadline_ms": deadline_ms, "placement": placement},
            split_after=split_after,
            device_nodes=list(device_node or []),
            overwrite=overwrite,
        )
        table = Table(title=f"Offloading plan: {sc.name}", title_justify="left")
        cols = ["device", "decision", "target", "split", "ms", "mJ", "local ms", "edge ms"]
        for col in [*cols, "cloud ms", "deadline"]:
            table.add_column(col)
        for r in outcome.rows:

            def fmt(v: Any) -> str:
                return "-" if v is None else f"{v:.4g}"

            table.add_row(
                r["device"],
                r["decision"],
                r["target"],
                r["split"],
                fmt(r["latency_ms"]),
                fmt(r["energy_mj"]),
                fmt(r["local_ms"]),
                fmt(r["edge_ms"]),
                fmt(r["cloud_ms"]),
                "ok" if r["meets_deadline"] else "MISS",
            )
        # ten columns: never squeeze device names on a narrow terminal
        Console(width=max(console.width, 130), soft_wrap=True).print(table)
        for line in outcome.notes:
            console.print(line, highlight=False)
        console.print(f"plan: {outcome.path}", highlight=False)
