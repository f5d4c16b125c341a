"""Run reports: results.json and a self-contained report.html with plots.

Components register the renderer of their own results section with
``edgeintel.report.sections.register_section``; see docs/report.md.
A lazy face (``edgeintel.lazy``): each name loads its module (matplotlib, Jinja2) on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.report import plots
    from edgeintel.report.environment import machine_info, package_versions
    from edgeintel.report.figures import Figure, figure_from_matplotlib
    from edgeintel.report.html import render_report, write_report
    from edgeintel.report.sections import (
        SECTIONS,
        Headline,
        RenderContext,
        details,
        generic_section,
        kv_table,
        register_section,
        table,
    )

__all__ = [
    "SECTIONS",
    "Figure",
    "Headline",
    "RenderContext",
    "details",
    "figure_from_matplotlib",
    "generic_section",
    "kv_table",
    "machine_info",
    "package_versions",
    "plots",
    "register_section",
    "render_report",
    "table",
    "write_report",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
