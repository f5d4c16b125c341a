"""Report helper for the federated training stage: the privacy part of the training section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeintel.pipeline.core import RunContext
from edgeintel.report import plots
from edgeintel.training.private import privacy_summary

__all__ = ["report_privacy"]


def report_privacy(ctx: RunContext, engine: Any, section: str = "training") -> None:
    """Add ``results[section]["privacy"]`` and an epsilon-vs-round figure when DP was on.

    Call after the engine has run (``engine`` is a ``FederatedEngine`` built by
    ``edgeintel.training.private.build_private_engine``).
    """
    summary = privacy_summary(engine)
    if summary is None:
        return
    ctx.results.setdefault(section, {})["privacy"] = summary
    dp = summary.get("dp")
    if dp and dp["epsilon_vs_round"]:
        rounds = [p["round"] for p in dp["epsilon_vs_round"]]
        eps = [p["epsilon"] for p in dp["epsilon_vs_round"]]
        series: dict[str, Sequence[float]] = {f"epsilon (delta {dp['delta']:g})": eps}
        if dp["target_epsilon"] is not None:
            series["target"] = [dp["target_epsilon"]] * len(rounds)
        ctx.add_figure(
            section,
            "Privacy budget: epsilon vs round",
            plots.line_chart(rounds, series, "round", "epsilon"),
            f"Client-level DP-FedAvg, noise multiplier {dp['noise_multiplier']:g}, "
            f"{dp['clipping']} clipping; epsilon from {dp['accountant']}. Final epsilon "
            f"{dp['epsilon']:.3f}"
            + (" (stopped by the budget)." if dp["stopped_by_budget"] else "."),
        )
