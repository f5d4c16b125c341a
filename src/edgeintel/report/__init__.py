"""Run reports: results.json and a self-contained report.html with plots."""

from edgeintel.report import plots
from edgeintel.report.html import render_report, write_report

__all__ = ["plots", "render_report", "write_report"]
