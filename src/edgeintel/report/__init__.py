"""Run reports: results.json and a self-contained report.html with plots."""

from edgeintel.report import plots
from edgeintel.report.environment import machine_info, package_versions
from edgeintel.report.html import render_report, write_report

__all__ = ["machine_info", "package_versions", "plots", "render_report", "write_report"]
