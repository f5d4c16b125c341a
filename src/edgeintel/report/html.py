"""A self-contained HTML report: summary tables per section, figures inlined as base64 PNG."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2330}
h1{margin-bottom:0}.sub{color:#667;margin-top:.2em}
h2{border-bottom:2px solid #e3e7ef;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #dde2ea;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f9}.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}
figure{margin:1em 0}figcaption{color:#556;font-size:.9em}img{max-width:100%}
details{margin:.5em 0}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}
"""

_SECTION_TITLES = {
    "data": "Data",
    "training": "Training",
    "edge_training": "Edge training",
    "model": "Model",
    "evaluation": "Evaluation",
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) > 12:
        return html.escape(json.dumps(v[:12])[:-1] + ", …]")
    if isinstance(v, dict | list):
        return html.escape(json.dumps(v)[:300])
    return html.escape(str(v))


def _is_scalar(v: Any) -> bool:
    return not isinstance(v, dict | list)


def _grid(records: dict[str, dict[str, Any]]) -> str:
    """A dict of flat dicts as one table: a row per key, a column per inner field."""
    cols: list[str] = []
    for rec in records.values():
        cols += [c for c in rec if c not in cols]
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th>"
        + "".join(f"<td>{_fmt(rec.get(c, ''))}</td>" for c in cols)
        + "</tr>"
        for k, rec in records.items()
    )
    return f"<table>{head}{body}</table>"


def _cell(v: Any) -> str:
    if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values()):
        return (
            "<table>"
            + "".join(
                f"<tr><td>{html.escape(str(a))}</td><td>{_fmt(b)}</td></tr>" for a, b in v.items()
            )
            + "</table>"
        )
    if (
        isinstance(v, dict)
        and v
        and all(isinstance(x, dict) and all(_is_scalar(y) for y in x.values()) for x in v.values())
    ):
        return _grid(v)
    return _fmt(v)


def _table(section: dict[str, Any]) -> str:
    rows = []
    for k, v in section.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            continue  # long per-item records stay in results.json
        rows.append(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_report(results: dict[str, Any], figures: Sequence[Any]) -> str:
    """HTML text of the report for a run's ``results`` and figures."""
    sc = results.get("scenario", {})
    status = results.get("status", "?")
    cls = "ok" if status == "completed" else "bad"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>edgeintel run {html.escape(str(results.get('run_id', '')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>edgeintel — {html.escape(str(sc.get('name', '')))}</h1>",
        f"<p class='sub'>{html.escape(str(sc.get('description', '')))}</p>",
        "<table>",
        f"<tr><th>run</th><td>{html.escape(str(results.get('run_id')))}</td></tr>",
        f"<tr><th>created</th><td>{html.escape(str(results.get('created')))}</td></tr>",
        f"<tr><th>status</th><td class='{cls}'>{html.escape(status)}</td></tr>",
    ]
    if results.get("error"):
        parts.append(f"<tr><th>error</th><td class='bad'>{html.escape(results['error'])}</td></tr>")
    parts.append(
        f"<tr><th>devices / edge servers</th><td>{sc.get('devices')} / {sc.get('edge_servers')}"
        f"</td></tr><tr><th>stage timings (s)</th><td>{_cell(results.get('timings_s', {}))}"
        "</td></tr></table>"
    )
    fixed = {
        "run_id",
        "created",
        "status",
        "error",
        "scenario",
        "machine",
        "versions",
        "stages",
        "timings_s",
    }
    sections = [k for k in results if k not in fixed and isinstance(results[k], dict)]
    for key in sections:
        title = _SECTION_TITLES.get(key, key.replace("_", " ").capitalize())
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(_table(results[key]))
        for fig in figures:
            if fig.section == key:
                parts.append(
                    f"<figure><img alt='{html.escape(fig.title)}' "
                    f"src='data:image/png;base64,{fig.png_base64}'>"
                    f"<figcaption><b>{html.escape(fig.title)}.</b> {html.escape(fig.caption)}"
                    "</figcaption></figure>"
                )
    parts.append(
        "<h2>Machine</h2>" + _table({**results.get("machine", {}), **results.get("versions", {})})
    )
    parts.append(
        "<details><summary>results.json</summary><pre>"
        + html.escape(json.dumps(results, indent=1, default=str)[:200_000])
        + "</pre></details></body></html>"
    )
    return "".join(parts)


def write_report(path: str | Path, results: dict[str, Any], figures: Sequence[Any]) -> Path:
    p = Path(path)
    tmp = p.with_suffix(".html.tmp")
    tmp.write_text(render_report(results, figures), encoding="utf-8")
    tmp.replace(p)
    return p
