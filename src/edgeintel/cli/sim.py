"""Commands ``simulate`` and ``sweep``: the fleet simulator, one scenario or a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeintel.cli.common import (
    DEFAULT_SCENARIO,
    OverwriteOutOpt,
    QuietOpt,
    RunsDirOpt,
    ScenarioArg,
    SeedOpt,
    SetOpt,
    console,
    err_console,
    guard,
    load,
)
from edgeintel.errors import EdgeIntelError

__all__ = ["simulate", "sweep"]

SWEEP_COLUMNS = (
    ("latency_p50_s", "p50 ms", 1e3),
    ("latency_p95_s", "p95 ms", 1e3),
    ("energy_j", "energy J", 1.0),
    ("cpu_s", "CPU s", 1.0),
)
"""The sweep's terminal table: figure, header, scale (a row fits 100 columns)."""


def simulate(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    devices: Annotated[
        int | None,
        typer.Option(help="Fleet size (default: settings.sim.devices or the scenario's)."),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Simulated seconds.")] = None,
    seed: SeedOpt = None,
    engine: Annotated[
        str | None,
        typer.Option(help="fast (compiled kernel), python (our heap core) or simpy (reference)."),
    ] = None,
    placement: Annotated[
        str | None, typer.Option(help="Initial placement policy (offloading PLACEMENTS).")
    ] = None,
    cache_policy: Annotated[
        str | None, typer.Option(help="Result cache replacement policy (caching POLICIES).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder for results.json + report.html.")
    ] = None,
    from_run: Annotated[
        Path | None,
        typer.Option(
            help="Take the task's figures from this run of the scenario: model time, bytes, "
            "the filter's skip fraction (default: measure the scenario's model here)."
        ),
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override a scenario field: key.path=value.")
    ] = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOutOpt = False,
) -> None:
    """Simulate the scenario's fleet (discrete events) and write results.json + report.html."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeintel.commands.simulate import scenario_workload, sim_settings_with, simulate_command
    from edgeintel.examples import resolve_scenario

    with guard():
        scenario = resolve_scenario(scenario)
        sc = load(scenario, None, sets)
        work, notes = scenario_workload(sc, from_run)
        st = sim_settings_with(
            sc,
            {
                **work,
                "devices": devices,
                "duration_s": duration,
                "seed": seed,
                "engine": engine,
                "placement": placement,
                "cache_policy": cache_policy,
            },
        )
        bar = Progress(
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}% of simulated time"),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
            transient=True,
        )
        with bar:
            tid = bar.add_task("sim", total=1.0)
            outcome = simulate_command(
                sc,
                st,
                out_dir=out,
                runs_dir=runs_dir,
                progress=lambda f: bar.update(tid, completed=f),
                scenario_file=str(scenario),
                notes=notes,
                overwrite=overwrite,
            )
        s = outcome.result.summary()
        table = Table(title=f"Simulation: {sc.name}", title_justify="left")
        table.add_column("placement")
        for col in ("completed", "p50 ms", "p95 ms", "p99 ms"):
            table.add_column(col, justify="right")
        for slot in ("", "_local", "_edge", "_cloud"):
            table.add_row(
                slot.strip("_") or "all",
                f"{s[f'completed{slot}']:.0f}",
                *(f"{s[f'latency_p{q}_s{slot}'] * 1e3:.4g}" for q in (50, 95, 99)),
            )
        console.print(table)
        console.print(
            f"{s['devices']:.0f} devices x {s['duration_s']:g} s: {s['tasks']:.0f} tasks "
            f"({s['skipped']:.0f} skipped, {s['cache_hits']:.0f} cache hits), "
            f"{s['handovers']:.0f} handovers, {s['energy_j']:.4g} J; {s['events']:.0f} events "
            f"in {s['cpu_s']:.3g} s CPU ({outcome.result.engine})",
            highlight=False,
        )
        console.print(f"results: {outcome.run_dir / 'results.json'}", highlight=False)


def sweep(
    scenario: ScenarioArg,
    grid: Annotated[
        Path,
        typer.Option(
            help="Grid YAML: axes (policy, SimSettings fields, bandwidth_mbps, scenario paths) "
            "-> lists of values, and seeds."
        ),
    ],
    workers: Annotated[
        int | None, typer.Option(help="Processes on this machine (default: CPU count).")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Run on a Ray cluster: auto, host:port, or local (extra 'ray')."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for sweep.csv, sweep.json, sweep.png.")] = Path(
        "runs/sweep"
    ),
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="Figure(s) to plot (repeatable), e.g. latency_p95_s."),
    ] = None,
    x: Annotated[str | None, typer.Option("--x", help="Axis along the plot's x.")] = None,
    sets: SetOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOutOpt = False,
) -> None:
    """Simulate every point of a grid (policies x fleet sizes x bandwidths x seeds) in parallel
    processes or on Ray; one table (CSV, JSON) and one plot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from edgeintel.commands.simulate import scenario_workload, sim_settings_with
    from edgeintel.examples import resolve_scenario
    from edgeintel.paths import check_new_out_dir
    from edgeintel.sim.sweep import load_grid
    from edgeintel.sim.sweep import sweep as run_sweep

    with guard():
        if workers is not None and workers < 1:
            raise EdgeIntelError(f"--workers: expected an integer >= 1, got {workers}")
        sc = load(resolve_scenario(scenario), None, sets)
        g = load_grid(grid)
        work, _ = scenario_workload(sc)  # the scenario's own workload, measured once
        if work:
            sc = sc.model_copy(
                update={
                    "settings": sc.settings.model_copy(update={"sim": sim_settings_with(sc, work)})
                }
            )
        if x is not None and x not in g.axes:
            raise EdgeIntelError(f"--x {x}: not an axis of the grid; axes are {list(g.axes)}")
        check_new_out_dir(out, "--out", overwrite)
        bar = Progress(
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
            transient=True,
        )
        with bar:
            tid = bar.add_task("sweep", total=len(g.points()))
            table = run_sweep(
                sc, g, workers, ray_address, lambda done, n: bar.update(tid, completed=done)
            )
        files = table.write(out, metrics=metric, x=x)
        shown = {
            m: (head, scale)
            for m, head, scale in SWEEP_COLUMNS
            if m in table.metrics and (m != "cpu_s" or len(table.axes) < 3)
        }
        t = Table(title=f"Sweep: {sc.name} ({table.backend})", title_justify="left", width=100)
        for a in table.axes:
            t.add_column(a.rsplit(".", 1)[-1][:16], overflow="ellipsis", max_width=22)
        t.add_column("seed", justify="right")
        for head, _ in shown.values():
            t.add_column(head, justify="right", no_wrap=True)
        for r in table.rows:
            t.add_row(
                *(str(r[a]) for a in table.axes),
                str(r["seed"]),
                *(
                    "-" if r.get(m) is None else f"{r[m] * sc_:.4g}"
                    for m, (_, sc_) in shown.items()
                ),
            )
        console.print(t)
        for kind, path in files.items():
            console.print(f"{kind}: {path}", highlight=False)
