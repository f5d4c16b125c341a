"""Commands ``export`` (a model into a device runtime's format) and ``parity`` (the parity
matrix of a model across device runtimes on real data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeintel.cli.common import OverwriteOutOpt, console, guard

__all__ = ["export_cmd", "parity_cmd"]

ModelArg = Annotated[
    Path,
    typer.Argument(
        help="A run folder (runs/<id>), an ONNX file (.onnx) or a PyTorch program (.pt2, "
        "torch.export.save).",
        show_default=False,
    ),
]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Your own data: an .npz with x_test, y_test (and x_calib for int8); default: "
        "the split recorded with the model.",
    ),
]


def export_cmd(
    model: ModelArg,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="Device runtime: onnxruntime, openvino, executorch or litert.",
            show_default=False,
        ),
    ],
    int8: Annotated[
        bool, typer.Option("--int8", help="int8 with the runtime's own quantizer (real data).")
    ] = False,
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("exported"),
    overwrite: OverwriteOutOpt = False,
) -> None:
    """Export a model to a device runtime's format (.onnx, OpenVINO .xml+.bin, ExecuTorch
    .pte), fp32 or int8 calibrated on real samples."""
    from edgeintel.commands.runtime_export import export_model, open_model
    from edgeintel.errors import ConfigError
    from edgeintel.inference.runtimes import RUNTIMES
    from edgeintel.paths import check_new_out_dir

    with guard():
        if runtime not in RUNTIMES:
            raise ConfigError(
                f"--runtime: unknown runtime {runtime!r}; expected one of: "
                f"{', '.join(RUNTIMES.names())}"
            )
        folder = check_new_out_dir(out, "--out", overwrite)
        m = open_model(model, data)
        artifact, files = export_model(m, runtime, int8, folder)
        size = sum(p.stat().st_size for p in files)
        console.print(
            f"{runtime} {'int8' if int8 else 'fp32'}: {artifact} ({size / 1024:.1f} KiB"
            + (f", {len(files)} files" if len(files) > 1 else "")
            + ")",
            highlight=False,
        )
        if int8 and m.data_from:
            console.print(f"calibrated on {m.data_from}", highlight=False)


def parity_cmd(
    model: ModelArg,
    runtime: Annotated[
        list[str] | None,
        typer.Option("--runtime", help="Runtime to check (repeatable); default: all registered."),
    ] = None,
    data: DataOpt = None,
    runs: Annotated[int, typer.Option(help="Timed batch-1 runs per artifact.")] = 100,
    out: Annotated[
        Path | None,
        typer.Option(help="Keep the exported artifacts and parity.json in this folder."),
    ] = None,
    overwrite: OverwriteOutOpt = False,
) -> None:
    """The parity matrix of a model on real held-out data: per runtime and precision the
    accuracy, top-1 agreement with fp32, logit error, first diverging layer, size, latency
    and peak memory."""
    from edgeintel.commands.runtime_export import open_model, parity_of
    from edgeintel.errors import ConfigError
    from edgeintel.paths import check_new_out_dir

    with guard():
        if isinstance(runs, bool) or runs < 5:
            raise ConfigError(f"--runs: expected an integer >= 5 timed runs, got {runs}")
        folder = None if out is None else check_new_out_dir(out, "--out", overwrite)
        m = open_model(model, data)
        console.print(f"data: {m.data_from}", highlight=False)
        report = parity_of(m, runtime, folder, runs)
        for line in report.table():
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        if folder is not None:
            (folder / "parity.json").write_text(json.dumps(report.to_json(), indent=2))
        missed = [
            f"{r.runtime} {r.precision}" for r in report.rows if r.error is None and not r.met
        ]
        if missed:
            console.print(f"below the agreement goal: {', '.join(missed)}", highlight=False)
