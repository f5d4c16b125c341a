"""Report renderer of the top-level ``payoff`` object: what each component bought, one row
per component (the figure with it, without it, and the sentence that decided it)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, register_section, table

__all__ = ["render_payoff"]


@register_section("payoff", title="What each component bought", order=5)
def render_payoff(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    rows = [
        {
            "component": name.replace("_", " "),
            "metric": v.get("metric"),
            "with": v.get("with"),
            "without": v.get("without"),
            "unit": v.get("unit"),
            "pays off": "yes" if v.get("better") else "no",
            "why": v.get("why"),
        }
        for name, v in data.items()
        if isinstance(v, dict)
    ]
    if not rows:
        return Markup("<p>No component ran.</p>")
    return table(
        rows,
        caption="Each component with and without it, from the figures its stage measured",
        row_class=lambda r: "good" if r["pays off"] == "yes" else "bad",
    )
