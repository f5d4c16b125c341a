"""Report sections: a registry of section renderers plus the table and figure helpers they share.

Each top-level dict in a run's ``results`` is a *section* (``data``,
``training``, ``compression``, ...). The component that writes a section
registers the renderer of that section next to the code that writes it::

    from edgeintel.report.sections import RenderContext, register_section, table

    @register_section("offloading", title="Offloading", order=60)
    def _render(data: dict, figures: list[Figure], ctx: RenderContext) -> str:
        ctx.headline.profile("phone", "runs where", data["plan"]["phone"]["tier"])
        ctx.headline.tier("device→edge", "bytes per request", data["bytes"])
        if data["gain"] < 0.05:
            ctx.warn("offloading saves under 5 % latency over running locally")
        return table(data["per_device"], caption="Plan per device") + ctx.figures(figures)

The report (``edgeintel.report.html``) knows no section by name: it renders
every section through its registered renderer (or ``generic_section``, which
turns dicts and lists into tables) in ``order``, then puts what renderers
added to ``ctx.headline`` into the headline card at the top of the page.
A renderer returns an HTML fragment (``str`` / ``markupsafe.Markup``); figures
of the section it did not place with ``ctx.figure``/``ctx.figures`` are
appended after it. A renderer that raises is replaced by the generic one and
the error is shown as a warning, so a report is always written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from edgeintel.registry import Registry
from edgeintel.report.figures import Figure

__all__ = [
    "SECTIONS",
    "Headline",
    "RenderContext",
    "Renderer",
    "SectionSpec",
    "accuracy_margin",
    "check_accuracy",
    "details",
    "fmt",
    "generic_section",
    "kv_table",
    "payoff_sentences",
    "register_section",
    "render_template",
    "section_spec",
    "table",
]

Renderer = Callable[[dict[str, Any], list[Figure], "RenderContext"], str]

#: Rows beyond this many collapse into a <details> element.
COLLAPSE_AFTER = 12


@dataclass(frozen=True)
class SectionSpec:
    """How one results section is shown: its title, place (``order``) and renderer."""

    name: str
    title: str
    order: int
    render: Renderer


SECTIONS: Registry[SectionSpec] = Registry("report section")

# The built-in renderers live next to the pipeline stage that writes each section; they are
# named here and imported on first lookup, so a report renders the same whatever the caller
# imported before (``edgeintel report`` re-renders a run without importing any stage).
for _module, _names in {
    "data_section": ("data",),
    "training_section": ("training", "edge_training"),
    "inference_section": ("model", "evaluation", "compression"),
    "offloading_section": ("offloading",),
    "caching_section": ("caching",),
    "payoff_section": ("payoff",),
    "runtimes_section": ("runtimes",),
    "runtime_section": ("runtime",),
    "sim_section": ("simulation",),
}.items():
    SECTIONS.provide(f"edgeintel.pipeline.sections.{_module}", *_names)


def register_section(
    name: str, *, title: str | None = None, order: int = 100
) -> Callable[[Renderer], Renderer]:
    """Decorator: render ``results[name]`` with the decorated function.

    ``order`` places the section on the page (data 10, training 20-30, model 40,
    evaluation 50, compression 55, ... — the pipeline stage orders); ``title``
    defaults to the name with underscores as spaces, capitalised.
    """

    def deco(fn: Renderer) -> Renderer:
        SECTIONS.add(name, SectionSpec(name, title or _humanize(name), order, fn))
        return fn

    return deco


def section_spec(name: str) -> SectionSpec:
    """The registered spec of ``name``, or the generic renderer (order 1000) if none."""
    if name in SECTIONS:
        return SECTIONS.get(name)
    return SectionSpec(name, _humanize(name), 1000, generic_section)


# --------------------------------------------------------------------------- headline


@dataclass
class Headline:
    """What section renderers contribute to the headline card at the top of the report.

    * ``fact(label, value)``: a line of "what ran" (dataset, model, ...);
    * ``accuracy(label, value)``: an accuracy compared on one bar with the others
      and with ``chance`` (``RenderContext.chance``: the test set's majority class);
    * ``profile(name, column, value)``: a cell of the per-device-profile table
      (what each profile receives and why);
    * ``tier(name, column, value)``: a cell of the cost-per-tier table (bytes,
      energy, time per link tier);
    * ``warnings``: filled through ``RenderContext.warn``.
    """

    facts: list[tuple[str, Markup]] = field(default_factory=list)
    accuracies: list[tuple[str, float, str]] = field(default_factory=list)
    chance: float | None = None
    profiles: dict[str, dict[str, Markup]] = field(default_factory=dict)
    tiers: dict[str, dict[str, Markup]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def fact(self, label: str, value: Any) -> None:
        self.facts.append((label, _cell(value)))

    def accuracy(self, label: str, value: float | None, note: str = "") -> None:
        if value is not None and math.isfinite(float(value)):
            self.accuracies.append((label, float(value), note))

    def profile(self, name: str, column: str, value: Any) -> None:
        self.profiles.setdefault(name, {})[column] = _cell(value)

    def tier(self, name: str, column: str, value: Any) -> None:
        self.tiers.setdefault(name, {})[column] = _cell(value)


class RenderContext:
    """Passed to every renderer: the whole ``results``, the headline, figure placement."""

    def __init__(self, results: Mapping[str, Any]) -> None:
        self.results = results
        self.headline = Headline()
        self._used: set[int] = set()

    def warn(self, message: str) -> None:
        """A warning for the headline card (e.g. accuracy near chance)."""
        if message not in self.headline.warnings:
            self.headline.warnings.append(message)

    def figure(self, fig: Figure) -> Markup:
        """HTML of one figure (marked as placed, so it is not appended again)."""
        self._used.add(id(fig))
        return render_template("figure.html.j2", fig=fig)

    def figures(self, figs: Iterable[Figure]) -> Markup:
        """HTML of several figures, in a responsive grid."""
        inner = Markup("").join(self.figure(f) for f in figs)
        return Markup(f"<div class='figs'>{inner}</div>") if inner else Markup("")

    def unused(self, figs: Iterable[Figure]) -> list[Figure]:
        return [f for f in figs if id(f) not in self._used]

    @property
    def num_classes(self) -> int | None:
        classes = (self.results.get("data") or {}).get("classes")
        return len(classes) if isinstance(classes, list) and classes else None

    @property
    def chance(self) -> float | None:
        """The run's one chance level: the accuracy of always answering the test set's
        majority class (``data.split.chance_accuracy``, as the terminal and edge training
        quote it); 1 / number of classes only when a run recorded no split."""
        split = (self.results.get("data") or {}).get("split") or {}
        value = split.get("chance_accuracy") if isinstance(split, Mapping) else None
        if isinstance(value, int | float):
            return float(value)
        nc = self.num_classes
        return 1.0 / nc if nc else None


# --------------------------------------------------------------------------- templates


@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edgeintel.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = fmt
    env.filters["cell"] = _cell
    return env


def render_template(name: str, **context: Any) -> Markup:
    """Render a template of ``edgeintel/report/templates`` (autoescaped) to safe HTML."""
    return Markup(_env().get_template(name).render(**context))


# --------------------------------------------------------------------------- values


def _humanize(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def fmt(value: Any) -> str:
    """Plain text of a scalar: 4 significant digits for floats, thousands separators for ints."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def _is_scalar(v: Any) -> bool:
    return not isinstance(v, dict | list | tuple)


def _cell(value: Any) -> Markup:
    """HTML of any JSON value inside a table cell: scalars as text, containers as tables."""
    if isinstance(value, Markup):
        return value
    if _is_scalar(value):
        return Markup(escape(fmt(value)))
    if isinstance(value, dict):
        if not value:
            return Markup("—")
        return kv_table(value, nested=True)
    items = list(value)
    if not items:
        return Markup("—")
    if all(isinstance(x, dict) for x in items):
        return table(items, nested=True)
    if all(_is_scalar(x) for x in items):
        text = ", ".join(fmt(x) for x in items)
        if len(items) <= COLLAPSE_AFTER:
            return Markup(escape(text))
        return details(f"{len(items)} values", Markup(f"<div class='list'>{escape(text)}</div>"))
    return table([{"#": i, "value": x} for i, x in enumerate(items)], nested=True)


def details(summary: str, body: str | Markup, open_: bool = False) -> Markup:
    """A collapsed block: ``summary`` shown, ``body`` (safe HTML) revealed on click."""
    flag = " open" if open_ else ""
    return Markup(f"<details{flag}><summary>{escape(summary)}</summary>{Markup(body)}</details>")


# --------------------------------------------------------------------------- tables


def table(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    caption: str | None = None,
    index: str | None = None,
    headers: Mapping[str, str] | None = None,
    row_class: Callable[[Mapping[str, Any]], str] | None = None,
    collapse_after: int = COLLAPSE_AFTER,
    nested: bool = False,
) -> Markup:
    """An HTML table of records; nothing is cut: rows past ``collapse_after`` collapse.

    ``rows`` is a list of dicts (one row each) or a dict of dicts (the key
    becomes the first column, named ``index``). ``columns`` picks and orders
    the columns (default: every key, in first-seen order); ``headers`` renames
    them; ``row_class(row)`` gives a CSS class (``good``, ``bad``, ``muted``,
    ``chosen``). Nested dicts/lists render as nested tables.
    """
    if isinstance(rows, Mapping):
        key = index or ""
        records = [{key: k, **dict(v)} for k, v in rows.items()]
    else:
        records = [dict(r) for r in rows]
    if columns is None:
        cols: list[str] = []
        for r in records:
            cols += [c for c in r if c not in cols]
    else:
        cols = list(columns)
    hdr = headers or {}
    classes = [row_class(r) if row_class else "" for r in records]
    head = render_template(
        "table.html.j2",
        cols=cols,
        headers=hdr,
        records=records,
        classes=classes,
        caption=caption,
        nested=nested,
        numeric={c: all(_numeric(r.get(c)) for r in records) for c in cols},
        collapse_after=collapse_after,
    )
    return head


def _numeric(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def kv_table(
    mapping: Mapping[str, Any], *, caption: str | None = None, nested: bool = False
) -> Markup:
    """A two-column table (field, value) of a mapping; nested values become tables."""
    items = list(mapping.items())
    if len(items) > 3 * COLLAPSE_AFTER:
        head, rest = items[:COLLAPSE_AFTER], items[COLLAPSE_AFTER:]
        return render_template("kv.html.j2", items=head, rest=rest, caption=caption, nested=nested)
    return render_template("kv.html.j2", items=items, rest=[], caption=caption, nested=nested)


def generic_section(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    """Fallback renderer: scalars in one field/value table, each list of records as a table.

    Used for any section without a registered renderer, so a new component's
    results show up as readable tables before it writes its own renderer.
    """
    scalars = {k: v for k, v in data.items() if not _records(v)}
    parts: list[Markup] = []
    if scalars:
        parts.append(kv_table(scalars))
    for k, v in data.items():
        if _records(v):
            parts.append(table(v, caption=_humanize(k)))
    parts.append(ctx.figures(figures))
    return Markup("").join(parts)


def _records(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


# --------------------------------------------------------------------------- shared checks


def accuracy_margin(chance: float, n_test: int | None) -> float:
    """How close to chance counts as "near chance": 2 standard errors of a chance-level
    classifier on ``n_test`` samples, at least 5 points."""
    if not n_test:
        return 0.05
    return max(0.05, 2.0 * math.sqrt(chance * (1.0 - chance) / n_test))


def check_accuracy(
    ctx: RenderContext,
    label: str,
    series: Sequence[float | None],
    *,
    unit: str = "round",
    n_test: int | None = None,
) -> None:
    """Warn when ``label``'s final accuracy is near chance or did not improve over the series."""
    vals = [float(v) for v in series if v is not None and math.isfinite(float(v))]
    if not vals:
        return
    final = vals[-1]
    chance = ctx.chance
    if chance is not None and final <= chance + accuracy_margin(chance, n_test):
        ctx.warn(
            f"{label}: accuracy {final:.3f} is near chance ({chance:.3f}, always the "
            "test set's majority class)"
        )
    # (a run that starts at the ceiling has nothing left to improve)
    if len(vals) >= 3 and vals[0] < 0.99 and max(vals[len(vals) // 2 :]) <= vals[0] + 0.01:
        ctx.warn(
            f"{label}: no improvement across {unit}s (accuracy {vals[0]:.3f} after the first "
            f"{unit}, {final:.3f} after the last)"
        )


def payoff_sentences(results: Mapping[str, Any], section: str) -> list[tuple[str, str]]:
    """``(component, why)`` from results.json's ``payoff`` for the components whose
    sentence opens the results section ``section`` (report and terminal summary)."""
    payoff = results.get("payoff") or {}
    if not isinstance(payoff, Mapping):
        return []
    return [
        (str(k), str(v["why"]))
        for k, v in payoff.items()
        if isinstance(v, Mapping) and v.get("section") == section and v.get("why")
    ]
