"""Report figures: a matplotlib figure stored as a base64 PNG, tagged with its report section."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Figure", "figure_from_matplotlib", "load_figures", "png_base64", "save_figures"]


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


def save_figures(run_dir: str | Path, figures: list[Figure]) -> Path:
    """Write each figure to ``<run_dir>/figures/NN-<section>-<title>.png`` plus an index
    ``figures/index.json`` (section, title, caption, file), so a report can be re-rendered
    (``edgeintel report RUN_DIR``) and figures reused without the HTML."""
    d = Path(run_dir) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    index = []
    for i, fig in enumerate(figures):
        slug = re.sub(r"[^a-z0-9]+", "-", f"{fig.section}-{fig.title}".lower()).strip("-")
        name = f"{i:02d}-{slug[:60]}.png"
        (d / name).write_bytes(base64.b64decode(fig.png_base64))
        index.append({**fig.to_json(), "file": name})
    (d / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return d


def load_figures(run_dir: str | Path) -> list[Figure]:
    """The figures ``save_figures`` wrote for a run (empty when there are none); a broken
    ``figures/index.json`` (or one naming a file outside ``figures/``) is one ``DataError``."""
    from edgeintel.errors import DataError
    from edgeintel.paths import safe_name
    from edgeintel.records import read_json_list

    d = Path(run_dir) / "figures"
    index_path = d / "index.json"
    if not index_path.is_file():
        return []
    out = []
    for rec in read_json_list(index_path, "the figure index of a run"):
        name = rec.text("file")
        try:
            safe_name(name, "file")
        except ValueError:
            raise rec.fail("file", "a file name inside figures/", name) from None
        png = d / name
        if not png.is_file():
            raise DataError(f"{index_path}: {rec.where}.file: {png} does not exist")
        out.append(
            Figure(rec.text("section"), rec.text("title"),
                   base64.b64encode(png.read_bytes()).decode("ascii"), rec.text("caption", ""))
        )  # fmt: skip
    return out
