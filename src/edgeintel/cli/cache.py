"""Command ``cache-sim``: replacement policies on a request trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeintel.cli.common import console, guard

__all__ = ["cache_sim_cmd"]


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
