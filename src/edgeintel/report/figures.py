"""Report figures: a matplotlib figure stored as a base64 PNG, tagged with its report section."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

__all__ = ["Figure", "figure_from_matplotlib", "png_base64"]


@dataclass
class Figure:
    """A PNG figure for the report, stored base64-encoded.

    ``section`` is the results key whose renderer shows it; ``title`` and
    ``caption`` are shown under the image.
    """

    section: str
    title: str
    png_base64: str
    caption: str = ""

    def to_json(self) -> dict[str, str]:
        return {"section": self.section, "title": self.title, "caption": self.caption}


def png_base64(fig: Any, dpi: int = 110) -> str:
    """PNG bytes of a matplotlib figure, base64 text; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_from_matplotlib(section: str, title: str, fig: Any, caption: str = "") -> Figure:
    """A ``Figure`` for ``section`` from a matplotlib figure (closed afterwards)."""
    return Figure(section, title, png_base64(fig), caption)
