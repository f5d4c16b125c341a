"""Write the benchmark figures quoted in ``docs/*.md`` from ``benchmarks/results/*.json``.

A doc marks a generated block with ``<!-- bench:NAME -->`` ... ``<!-- /bench -->``; this
script replaces the block's body with the table NAME renders from the results files,
so the docs never drift from the JSON. NAME is ``targets:<area>`` (the area's targets)
or one of the detail tables in :data:`RENDERERS`.

A single figure in prose is marked inline:
``<!-- fig:AREA:PATH|SPEC -->VALUE<!-- /fig -->`` on one line, AREA a results file's
(lower-case) stem, so the upper-case spelling here is not a marker. PATH walks ``results/AREA.json``
by dots: a dict key (keys that contain dots, such as ``bikes.mp4``, match whole), a list
index (``0``) or the first list item whose field equals a value (``name=p50 latency``);
SPEC is a Python format spec (``.1%``, ``.3f``, ``,.0f``; empty for ``str``). VALUE is
rewritten as ``format(value, SPEC)``; a path that does not resolve is an error naming the
doc, line, area and path.

Run: ``PYTHONPATH=src python benchmarks/render_docs.py`` (rewrites docs in place) or
``--check`` (exit 1 and name the stale files; the test suite runs this check).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "RENDERERS",
    "FigureError",
    "check",
    "figure",
    "load_results",
    "render",
    "render_block",
    "resolve",
    "stale_figures",
]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- bench:(?P<name>[\w:/.-]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)
FIG = re.compile(
    r"(?P<open><!-- fig:(?P<area>[a-z0-9_-]+):(?P<path>(?:(?!-->).)+)\|(?P<spec>[^|]*?) -->)"
    r"(?P<value>.*?)(?P<close><!-- /fig -->)"
)

Results = dict[str, dict[str, Any]]


def load_results(directory: Path = RESULTS) -> Results:
    """Every ``<area>.json`` in ``directory`` by area name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def fmt(v: Any) -> str:
    """A number with 3 significant figures-ish; others as text."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    a = abs(float(v))
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01 or a == 0:
        return f"{v:.3f}".rstrip("0").rstrip(".") if a < 1 else f"{v:.2f}"
    return f"{v:.2g}"


def pm(stat: dict[str, Any]) -> str:
    """``mean ± std`` of a :func:`_common.mean_std` record (``(1 seed)`` for one value)."""
    if stat.get("n", 2) == 1:
        return f"{stat['mean']:.3f} (1 seed)"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _targets(res: Results, area: str) -> str:
    data = res[area]
    rows = [
        [t["name"], f"{fmt(t['value'])} {t['unit']}", t["goal"], "yes" if t["met"] else "**no**"]
        for t in data["targets"]
    ]
    return _table(["target", "value", "goal", "met"], rows)


def _train_robustness(res: Results) -> str:
    rob = res["train"]["details"]["robustness"]
    attacks = list(rob)
    rules = list(rob[attacks[0]]["test_accuracy"])
    rows = []
    for a in attacks:
        r = rob[a]
        cells = []
        for rule in rules:
            cell = pm(r["test_accuracy"][rule])
            cells.append(f"**{cell}**" if rule == r["best_rule"] else cell)
        rows.append([a, pm(r["clean_test_accuracy"]), *cells])
    return _table(["attack (20 % malicious)", "clean FedAvg", *rules], rows)


def _train_derived(res: Results) -> str:
    d = res["train"]["details"]
    comp, hier = d["compression"]["derived"], d["hierarchical"]["derived"]
    e2c = hier["edge_to_cloud_bytes"]
    rows = [
        [
            "top-k 1 % uplink bytes reduction vs FedAvg",
            f"{fmt(comp['uplink_bytes_reduction_x'])}x",
            comp["note"],
        ],
        [
            "HierFAVG edge->cloud bytes vs flat edges that pre-sum",
            f"{fmt(hier['reduction_vs_presumming_edges_x'])}x "
            f"({e2c['hier'] / 1e6:.2f} MB vs {e2c['flat_edges_presum'] / 1e6:.2f} MB)",
            hier["note"],
        ],
        [
            "HierFAVG edge->cloud bytes vs flat edges that relay every update",
            f"{fmt(hier['reduction_vs_relaying_edges_x'])}x",
            "the unfair baseline, for reference",
        ],
    ]
    return _table(["derived figure", "value", "why it is derived"], rows)


def _privacy_dp(res: Results) -> str:
    runs = res["privacy"]["details"]["runs"]
    rows = [["no DP", "-", pm(runs["no_dp"]["accuracy"]), "-", "-"]]
    for key, r in runs.items():
        if key == "no_dp":
            continue
        spent = max(r["derived"]["epsilon_spent"])
        rows.append(
            [
                key.replace("epsilon_", "epsilon "),
                fmt(r["noise_multiplier"]),
                pm(r["accuracy"]),
                fmt(r["accuracy_drop_points"]),
                fmt(spent),
            ]
        )
    return _table(
        ["run", "noise multiplier", "test accuracy", "drop (points)", "epsilon spent (derived)"],
        rows,
    )


def _privacy_secagg(res: Results) -> str:
    s = res["privacy"]["details"]["secure_aggregation_100_devices"]
    rows = []
    for name, label in (("secagg", "SecAgg (complete graph)"), ("secagg_plus", "SecAgg+")):
        if name == "secagg_plus":
            label += f" k = {int(s['secagg_plus_neighbors'])}"
        rows.append(
            [
                label,
                f"{fmt(s[f'{name}_uplink_bytes_ratio'])}x",
                f"{s[f'{name}_extra_downlink_bytes_per_device'] / 1e3:.1f} kB",
                f"{fmt(s[f'{name}_round_s'])} s ({fmt(s[f'{name}_round_time_ratio'])}x)",
            ]
        )
    rows.append(["plain", "1x", "-", f"{fmt(s['plain_round_s'])} s"])
    return _table(["100 devices, one round", "uplink vs plain", "extra downlink", "round"], rows)


def _compress_models(res: Results) -> str:
    models = res["compress"]["details"]["models"]
    rows = []
    for tag, m in models.items():
        for name, a in m["artifacts"].items():
            best = " (best)" if name == m["best_recipe"] else ""
            acc = pm(a["accuracy"])
            if m["test_samples"] < 100:
                lo, hi = a["accuracy_95ci_seed0"]
                acc += f" [95% {lo:.2f}-{hi:.2f}]"
            rows.append(
                [
                    tag,
                    f"{name}{best}",
                    acc,
                    f"{fmt(a['accuracy_drop_points'])} vs {a['baseline']}",
                    f"{fmt(a['p50_speedup_vs_fp32_onnx'])}x",
                    f"{fmt(a['derived']['size_ratio_vs_fp32'])}x",
                ]
            )
    return _table(
        [
            "model",
            "variant",
            "test accuracy",
            "drop (points)",
            "p50 speedup vs fp32 ONNX",
            "size ratio (derived)",
        ],
        rows,
    )


def _sim_runs(res: Results) -> str:
    d = res["sim"]["details"]
    rows = []
    for name, r in d["runs"].items():
        rows.append(
            [
                name.replace("_x_", " x ").replace("_", " "),
                f"{r['tasks']:,}",
                f"{r['events']:,}",
                fmt(r["cpu_s"]),
                f"{r['events_per_cpu_s']:,}",
                fmt(r["peak_mib"]),
                f"{fmt(r['latency_p50_ms'])} / {fmt(r['latency_p95_ms'])}",
            ]
        )
    c = d["fast_vs_simpy"]
    rows.append(
        [
            f"{c['model']}: SimPy reference",
            "same",
            "same",
            fmt(c["simpy_cpu_s"]),
            "-",
            "-",
            f"identical records: {'yes' if c['identical_records'] else 'NO'}; "
            f"fast core {fmt(c['derived']['speedup_x'])}x less CPU (derived)",
        ]
    )
    return _table(
        ["run", "tasks", "events", "CPU (s)", "events / CPU s", "peak MiB", "p50 / p95 (ms)"],
        rows,
    )


def _runtimes_matrix(res: Results) -> str:
    d = res["runtimes"]["details"]
    rows = []
    for kind, m in d["models"].items():
        for key, c in m["cells"].items():
            runtime, precision = key.split("/")
            if c["error"] is not None:
                rows.append([kind, runtime, precision, "blocked", "-", "-", "-", "-", "-"])
                continue
            t = m["latency_seed0"].get(key, {})
            peak = t.get("peak_memory_bytes")
            rows.append(
                [
                    kind,
                    runtime,
                    precision,
                    f"{pm(c['agreement'])} (worst {c['worst_agreement']:.3f})",
                    pm(c["accuracy"]),
                    fmt(t.get("p50_ms")),
                    f"{fmt(t.get('p50_vs_onnxruntime_fp32'))}x",
                    fmt(t.get("file_bytes", 0) / 1024),
                    "-" if peak is None else fmt(peak / 2**20),
                ]
            )
    return _table(
        ["model", "runtime", "precision", "top-1 agreement", "accuracy", "p50 ms",
         "p50 vs ORT fp32", "KiB", "peak MiB"],
        rows,
    )  # fmt: skip


RENDERERS: dict[str, Callable[[Results], str]] = {
    "runtimes:matrix": _runtimes_matrix,
    "sim:runs": _sim_runs,
    "train:robustness": _train_robustness,
    "train:derived": _train_derived,
    "privacy:dp": _privacy_dp,
    "privacy:secagg": _privacy_secagg,
    "compress:models": _compress_models,
}


def render_block(name: str, res: Results) -> str:
    """The generated body of block ``name``."""
    if name.startswith("targets:"):
        area = name.split(":", 1)[1]
        if area not in res:
            raise KeyError(f"bench block {name!r}: no benchmarks/results/{area}.json")
        return _targets(res, area)
    if name not in RENDERERS:
        known = ", ".join(["targets:<area>", *RENDERERS])
        raise KeyError(f"unknown bench block {name!r}; known: {known}")
    return RENDERERS[name](res)


class FigureError(ValueError):
    """An inline figure whose area, path or format spec does not fit the results."""


def resolve(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``data`` (see the module docstring); KeyError if none."""
    parts = path.split(".")
    i, node = 0, data
    while i < len(parts):
        if isinstance(node, dict):
            # the longest run of parts that names a key, so "bikes.mp4" matches whole
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in node:
                    node, i = node[key], j
                    break
            else:
                raise KeyError(f"no key {parts[i]!r} (have {', '.join(map(str, node))})")
        elif isinstance(node, list):
            if parts[i].lstrip("-").isdigit():
                k = int(parts[i])
                if not -len(node) <= k < len(node):
                    raise KeyError(f"index {k} out of range (list of {len(node)})")
                node, i = node[k], i + 1
                continue
            for j in range(len(parts), i, -1):
                field, eq, want = ".".join(parts[i:j]).partition("=")
                if not eq:
                    continue
                hit = [x for x in node if isinstance(x, dict) and str(x.get(field)) == want]
                if hit:
                    node, i = hit[0], j
                    break
            else:
                raise KeyError(f"no list item matches {parts[i]!r} (use an index or key=value)")
        else:
            raise KeyError(f"{parts[i]!r} goes below a leaf value {node!r}")
    return node


def figure(area: str, path: str, spec: str, res: Results) -> str:
    """The text of inline figure ``area:path|spec``; :class:`FigureError` if it does not resolve."""
    if area not in res:
        raise FigureError(f"no benchmarks/results/{area}.json")
    try:
        value = resolve(res[area], path)
    except KeyError as e:
        raise FigureError(f"path not in {area}.json: {e.args[0]}") from None
    if isinstance(value, dict | list):
        raise FigureError(f"path is a {type(value).__name__}, not a value")
    try:
        return format(value, spec)
    except (ValueError, TypeError) as e:
        raise FigureError(f"format {spec!r} does not fit {value!r}: {e}") from None


def _render_figures(text: str, res: Results, doc: str) -> str:
    def sub(m: re.Match[str]) -> str:
        try:
            value = figure(m.group("area"), m.group("path"), m.group("spec"), res)
        except FigureError as e:
            line = text.count("\n", 0, m.start()) + 1
            raise FigureError(
                f"{doc}:{line}: figure {m.group('area')}:{m.group('path')}: {e}"
            ) from None
        return m.group("open") + value + m.group("close")

    return FIG.sub(sub, text)


def render(text: str, res: Results, doc: str = "<text>") -> str:
    """``text`` with every bench block's body and inline figure regenerated.

    ``doc`` names the text in errors; an unresolvable figure raises :class:`FigureError`.
    """
    text = BLOCK.sub(lambda m: m.group(1) + render_block(m.group("name"), res) + m.group(4), text)
    return _render_figures(text, res, doc)


def stale_figures(text: str, res: Results, doc: str = "<text>") -> list[str]:
    """One line per inline figure of ``text`` whose value differs from the results."""
    out = []
    for m in FIG.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        where = f"{doc}:{line}: figure {m.group('area')}:{m.group('path')}"
        try:
            want = figure(m.group("area"), m.group("path"), m.group("spec"), res)
        except FigureError as e:
            out.append(f"{where}: {e}")
            continue
        if m.group("value") != want:
            out.append(f"{where}: doc says {m.group('value')!r}, results give {want!r}")
    return out


def _doc_files(docs: Path) -> list[Path]:
    readme = docs.parent / "README.md"
    return sorted(docs.glob("*.md")) + ([readme] if readme.exists() else [])


def check(docs: Path = DOCS, results: Path = RESULTS) -> list[Path]:
    """Docs (and README.md) whose bench blocks or inline figures differ from the results.

    Raises :class:`FigureError` (doc, line, area, path) for a figure that does not resolve.
    """
    res = load_results(results)
    stale = []
    for p in _doc_files(docs):
        text = p.read_text()
        if render(text, res, _name(p)) != text:
            stale.append(p)
    return stale


def _name(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str]) -> int:
    res = load_results()
    if "--check" in argv:
        try:
            stale = check()
        except FigureError as e:
            print(e)
            return 1
        for p in stale:
            for line in stale_figures(p.read_text(), res, _name(p)):
                print(line)
            print(f"{_name(p)} is out of date with benchmarks/results; "
                  "run benchmarks/render_docs.py")  # fmt: skip
        return 1 if stale else 0
    for p in _doc_files(DOCS):
        text = p.read_text()
        try:
            new = render(text, res, _name(p))
        except FigureError as e:
            print(e)
            return 1
        if new != text:
            p.write_text(new)
            print(f"updated {_name(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
