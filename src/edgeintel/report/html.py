"""The self-contained HTML report of a run: a headline card, the topology, then one section
per results section, each drawn by its registered renderer (``report.sections``) through the
Jinja2 templates in ``edgeintel/report/templates``; figures are inlined as base64 PNG."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from edgeintel.report.figures import Figure
from edgeintel.report.sections import (
    RenderContext,
    fmt,
    generic_section,
    kv_table,
    payoff_sentences,
    render_template,
    section_spec,
    table,
)

__all__ = ["RenderedSection", "render_report", "render_sections", "rewrite_report", "write_report"]

log = logging.getLogger(__name__)

#: Top-level results keys that are run metadata, not sections.
RUN_FIELDS = frozenset(
    {"run_id", "created", "status", "error", "scenario", "machine", "versions", "stages",
     "timings_s", "title", "subtitle", "stage_status"}
)  # fmt: skip


@dataclass
class RenderedSection:
    key: str
    title: str
    order: int
    html: Markup


def render_sections(
    results: Mapping[str, Any], figures: Sequence[Figure], ctx: RenderContext
) -> list[RenderedSection]:
    """Every results section through its renderer, in ``order`` (then results order)."""
    out: list[tuple[int, int, RenderedSection]] = []
    keys = [k for k, v in results.items() if k not in RUN_FIELDS and isinstance(v, dict)]
    for pos, key in enumerate(keys):
        spec = section_spec(key)
        figs = [f for f in figures if f.section == key]
        try:
            body = Markup(spec.render(results[key], figs, ctx))
        except Exception as exc:  # a broken renderer must not lose the report
            log.exception("report renderer of section %r failed", key)
            ctx.warn(f"the renderer of section '{key}' failed ({exc}); shown as plain tables")
            body = generic_section(results[key], [], ctx)
        why = payoff_sentences(results, key)
        if why:  # every component section opens with why it decided what it did
            body = (
                Markup("").join(
                    Markup('<p class="why"><strong>{}:</strong> {}.</p>').format(
                        name.replace("_", " "), text
                    )
                    for name, text in why
                )
                + body
            )
        rest = ctx.unused(figs)
        if rest:
            body += ctx.figures(rest)
        out.append((spec.order, pos, RenderedSection(key, spec.title, spec.order, body)))
    # figures of sections that wrote no results (rare) still show
    orphan = sorted({f.section for f in figures} - set(keys))
    for key in orphan:
        spec = section_spec(key)
        body = ctx.figures(f for f in figures if f.section == key)
        out.append((spec.order, len(out), RenderedSection(key, spec.title, spec.order, body)))
    return [s for _, _, s in sorted(out, key=lambda t: (t[0], t[1]))]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("edgeintel")
    except Exception:
        return "?"


def render_report(results: Mapping[str, Any], figures: Sequence[Figure]) -> str:
    """HTML text of the report for a run's ``results`` and figures."""
    from edgeintel.report.topology import topology_svg

    ctx = RenderContext(results)
    sections = render_sections(results, figures, ctx)
    sc = results.get("scenario") or {}
    status = str(results.get("status", "?"))
    what: list[tuple[str, Markup]] = []
    if sc.get("name"):
        file = f" ({sc['file']})" if sc.get("file") else ""
        what.append(("scenario", escape(f"{sc['name']}{file}, seed {sc.get('seed')}")))
    if sc.get("devices") is not None:
        what.append(
            ("deployment", escape(f"{sc['devices']} devices, {sc.get('edge_servers', 0)} edge "
                                  "servers, 1 cloud"))
        )  # fmt: skip
    stages = results.get("stages") or []
    timings = results.get("timings_s") or {}
    if stages:
        total = sum(float(v) for v in timings.values())
        what.append(("stages", escape(f"{' → '.join(stages)} ({total:.1f} s)")))
    nc = ctx.num_classes
    if ctx.headline.chance is None:
        ctx.headline.chance = ctx.chance
    h = ctx.headline
    first = ("receives", "why")  # the story first, then the figures behind it
    cols = [c for c in first if any(c in p for p in h.profiles.values())]
    for p in h.profiles.values():
        cols += [c for c in p if c not in cols]
    profiles_table = (
        table(h.profiles, ["device profile", *cols], index="device profile", collapse_after=50)
        if h.profiles
        else None
    )
    tiers_table = table(h.tiers, index="tier", collapse_after=50) if h.tiers else None
    topo = sc.get("topology")
    css = files("edgeintel.report").joinpath("templates/style.css").read_text(encoding="utf-8")
    run_id = str(results.get("run_id", ""))
    title = results.get("title") or f"edgeintel — {sc.get('name', run_id)}"
    timing_rows = [{"stage": k, "seconds": v} for k, v in timings.items()]
    machine = {**(results.get("machine") or {}), **(results.get("versions") or {})}
    return render_template(
        "report.html.j2",
        page_title=f"{title} ({run_id})" if run_id else title,
        title=title,
        subtitle=results.get("subtitle") or sc.get("description", ""),
        status=status,
        error=results.get("error"),
        what_ran=what,
        headline=h,
        num_classes=nc,
        profiles_table=profiles_table,
        tiers_table=tiers_table,
        topology=topology_svg(topo) if topo else None,
        sections=sections,
        timings_table=table(timing_rows, caption="Stage timings (s)") if timing_rows else "",
        machine_table=kv_table(machine, caption="Machine and versions") if machine else "",
        css=Markup(css),
        version=_version(),
        run_id=run_id,
        created=fmt(results.get("created")),
    )


def write_report(path: str | Path, results: Mapping[str, Any], figures: Sequence[Figure]) -> Path:
    """Render and write the report atomically (a crash never leaves half a page)."""
    p = Path(path)
    tmp = p.with_suffix(".html.tmp")
    tmp.write_text(render_report(results, figures), encoding="utf-8")
    tmp.replace(p)
    return p


def rewrite_report(run_dir: str | Path) -> Path:
    """Re-render ``run_dir/report.html`` from its ``results.json`` and ``figures/``, both read
    through the checked loader; results a renderer cannot draw are one ``DataError``."""
    from edgeintel.errors import DataError
    from edgeintel.records import open_run
    from edgeintel.report.figures import load_figures

    rec = open_run(run_dir, "report").results()
    figures = load_figures(run_dir)
    try:
        return write_report(Path(run_dir) / "report.html", rec.data, figures)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DataError(
            f"{rec.source}: cannot be rendered ({type(exc).__name__}: {exc}); expected the "
            "results.json written by edgeintel"
        ) from None
