"""The ``edgeintel`` command line: one typer app, a module per command group.

``common`` holds what every command shares (the app, consoles, ``guard``, scenario
loading, the run summary); the command modules hold only typer code and call the
library. Commands are registered here, in the order ``edgeintel --help`` lists them.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from edgeintel.cli import (
    cache,
    certs,
    compress,
    lifecycle,
    plan,
    report,
    run,
    runtime,
    runtimes,
    sim,
)
from edgeintel.cli.common import app, err_console
from edgeintel.errors import EdgeIntelError

__all__ = ["app", "main"]

for _name, _command in (
    ("validate", run.validate),
    ("run", run.run),
    ("train", run.train),
    ("compress", compress.compress_cmd),
    ("export", runtimes.export_cmd),
    ("parity", runtimes.parity_cmd),
    ("report", report.report_cmd),
    ("examples", report.examples),
    ("cache-sim", cache.cache_sim_cmd),
    ("datasets", report.datasets),
    ("plan", plan.plan),
    ("simulate", sim.simulate),
    ("serve", runtime.serve_cmd),
    ("export-repo", runtime.export_repo_cmd),
    ("device", runtime.device_cmd),
    ("rollout", lifecycle.rollout_cmd),
    ("versions", lifecycle.versions_cmd),
    ("sweep", sim.sweep),
):
    app.command(_name)(_command)
app.add_typer(certs.certs_app, name="certs")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except EdgeIntelError as exc:  # raised outside a command's guard
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
