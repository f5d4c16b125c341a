"""What every ``edgeintel`` command shares: the typer app, the consoles, ``guard``
(project errors as one line and exit code 2), scenario loading, the common options and
the run summary printed by ``run`` and ``train``.

Every command turns an ``EdgeIntelError`` (bad scenario, data file, model...)
into one readable line on stderr and exit code 2; nothing prints a traceback
for bad input.
"""

from __future__ import annotations

import inspect
import logging
import re
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

__all__ = [
    "DEFAULT_SCENARIO",
    "OverwriteOpt",
    "OverwriteOutOpt",
    "QuietOpt",
    "RunIdOpt",
    "RunsDirOpt",
    "ScenarioArg",
    "SeedOpt",
    "SetOpt",
    "app",
    "console",
    "err_console",
    "guard",
    "load",
    "no_interrupt_traceback",
    "print_summary",
    "run_and_summarize",
    "summary_rows",
]


def _tidy(text: str) -> str:
    """A docstring as ``--help`` shows it: each paragraph's source line breaks joined (rich
    markup mode keeps them, so they broke lines mid-sentence in the command list), lists
    kept, reST ``literals`` as `literals`."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        listed = any(ln.lstrip().startswith(("- ", "* ", "\b")) for ln in lines)
        out.append(para if listed else " ".join(ln.strip() for ln in lines))
    return re.sub(r"``([^`]+)``", r"`\1`", "\n\n".join(out))


def _tidy_help(cmd: click.Command) -> None:
    """``_tidy`` every command's help text (once; groups recursively)."""
    if cmd.help:
        cmd.help = _tidy(cmd.help)
    for sub in getattr(cmd, "commands", {}).values():
        _tidy_help(sub)


class _OneLineErrors(TyperGroup):
    """Command-line usage errors (unknown option, a value of the wrong type) as one line
    on stderr and exit code 2, like every other bad input; Ctrl-C prints ``interrupted``;
    help texts reflowed by ``_tidy``."""

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
        _tidy_help(self)
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
OverwriteOutOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Write into an --out folder that holds earlier results."),
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


def load(scenario: Path, seed: int | None, sets: list[str] | None = None) -> Any:
    """Load and validate a scenario (``--set`` overrides applied first), optional seed.

    A user model factory named by ``task.model`` is imported later by its file path;
    neither the scenario's folder nor the working directory goes on ``sys.path``.
    """
    from edgeintel.examples import load_scenario_with

    if seed is not None and not 0 <= seed < 2**32:
        raise EdgeIntelError(f"--seed: expected an integer in [0, 2**32), got {seed}")
    sc = load_scenario_with(scenario, sets)
    return sc if seed is None else sc.model_copy(update={"seed": seed})


@contextmanager
def no_interrupt_traceback() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def run_and_summarize(
    sc: Any,
    scenario: Path,
    runs_dir: Path,
    run_id: str | None,
    stages: list[str] | None,
    quiet: bool,
    overwrite: bool = False,
    header: str = "",
) -> None:
    """Check the options, print the header (before the components load: the first line),
    check everything the scenario names without training (preflight, a line per step), run
    the stages on what preflight prepared, then print the summary table and output paths."""
    from edgeintel.pipeline import check_run_dir, check_stages, preflight, run_pipeline

    check_stages(stages)  # unknown --stage names
    check_run_dir(runs_dir, run_id, overwrite)  # --runs-dir, --run-id, reuse
    if header:
        console.print(header, highlight=False)
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
    print_summary(result.results)
    console.print(f"results: {result.results_path}", highlight=False)
    console.print(f"report:  {result.report_path}", highlight=False)


def _held(data: dict[str, Any]) -> str:
    """What the data's targets are, in words: ``N classes`` or the real-valued target."""
    stats = data.get("target_stats")
    if isinstance(stats, dict):
        unit = f" in {stats['unit']}" if stats.get("unit") else ""
        return f"real-valued target {', '.join(data['classes'])}{unit}"
    return f"{len(data['classes'])} classes"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    from edgeintel.report.sections import payoff_sentences

    rows: list[tuple[str, str]] = []
    data = results.get("data")
    if data:
        part = data["partition"]
        rows.append(
            (
                "dataset",
                f"{data['name']} ({data['samples']} samples, {_held(data)})",
            )
        )
        rows.append(
            (
                "partition",
                f"{part['kind']} over {part['devices']} devices, "
                f"label skew {part['label_skew']:.2f}",
            )
        )
        chance = (data.get("split") or {}).get("chance_accuracy")
        if isinstance(chance, int | float):
            rows.append(("chance level", f"{chance:.3f} (the test set's majority class)"))
        base = data.get("trivial_baseline")
        if isinstance(base, dict) and (
            base.get("metric") != "accuracy" or base.get("best") != "majority class"
        ):
            best = f"{base['best']}: {base['metric']} {base['value']:.4g}"
            rows.append(("trivial baseline", best))
    tr = results.get("training")
    if tr and tr.get("final_accuracy") is not None:
        rows.append((f"{tr['mode']} accuracy", f"{tr['final_accuracy']:.3f}"))
    elif tr and (tr.get("task") or {}).get("summary"):  # another kind: its own figures
        rows.append((f"{tr['mode']} {tr['task']['kind']}", str(tr["task"]["summary"])))
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
        metric = str(ev.get("metric", "accuracy"))  # the task kind's headline metric
        value = ev.get(f"{metric}_onnx")
        if isinstance(value, int | float):
            # as the report's headline writes it: accuracy with 3 decimals, others 4 figures
            shown = f"{value:.3f}" if metric == "accuracy" else f"{value:.4g}"
            rows.append((f"exported model {metric} ({by})", shown))
        rows.append(("latency here", f"p50 {lat['p50_ms']:.3f} ms, p95 {lat['p95_ms']:.3f} ms"))
        received = (results.get("compression") or {}).get("per_profile") or {}
        for name, p in ev["per_profile"].items():
            # the latency of the artifact the profile receives (compression's choice), energy
            # at the same power as the evaluation's fp32 estimate
            got = received.get(name) or {}
            ms, label = float(p["p50_ms"]), "fp32"
            if isinstance(got.get("latency_ms_device"), int | float):
                ms, label = float(got["latency_ms_device"]), str(got.get("chosen"))
            watts = float(p["energy_mj"]) / float(p["p50_ms"]) if p["p50_ms"] else 0.0
            rows.append((f"latency on {name}", f"p50 {ms:.3g} ms, {ms * watts:.3g} mJ ({label})"))
    for key, section in results.items():
        if isinstance(section, dict) and isinstance(section.get("summary"), dict):
            # each component's block opens with why it decided what it did (results' payoff)
            for name, why in payoff_sentences(results, key):
                rows.append((f"{name.replace('_', ' ')}: why", why))
            for k, v in section["summary"].items():
                label = f"{key.replace('_', ' ')}: {k.replace('_', ' ')}"
                rows.append((label, f"{v:.4g}" if isinstance(v, float) else str(v)))
    timings = results.get("timings_s", {})
    if timings:
        rows.append(("time", f"{sum(timings.values()):.1f} s"))
    return rows


def print_summary(results: dict[str, Any]) -> None:
    table = Table(title=f"Run {results['run_id']}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    for k, v in summary_rows(results):
        table.add_row(k, v)
    console.print(table)
