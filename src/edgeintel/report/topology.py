"""The scenario's topology as a JSON record and an SVG diagram for the report.

Tiers run top to bottom: the cloud, edge servers by hop count to the cloud
(macro, then micro base stations), device groups (with their device count and
profile) under the node they attach to. Every link is labelled with its
bandwidth (Mbit/s) and round-trip time (ms); a link with a time-varying trace
is drawn dashed.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from edgeintel.scenario import Scenario

__all__ = ["topology_json", "topology_svg"]

_BOX_W, _BOX_H, _SLOT, _LEVEL = 150, 46, 200, 118
_COLORS = {
    "cloud": ("#dbe7fb", "#2f5fb3"),
    "macro": ("#dcf3e2", "#1a7f37"),
    "micro": ("#eef8e6", "#4d8a2a"),
    "devices": ("#fff1de", "#b25e00"),
}


def topology_json(scenario: Scenario) -> dict[str, Any]:
    """A compact, JSON-ready description of the nodes and links (what the diagram shows)."""
    parents = {e.name: [*scenario.path_to_cloud(e.name), None][1] for e in scenario.edge_servers}
    return {
        "cloud": {"name": scenario.cloud.name, "compute_speed": scenario.cloud.compute_speed},
        "edge_servers": [
            {
                "name": e.name,
                "kind": str(e.kind),
                "compute_speed": e.compute_speed,
                "parent": parents[e.name],
            }
            for e in scenario.edge_servers
        ],
        "device_groups": [
            {
                "name": g.name,
                "count": g.count,
                "profile": g.profile,
                "attach": g.attach,
                "bandwidth_mbps": g.link.bandwidth_mbps,
                "rtt_ms": g.link.rtt_ms,
                "loss": g.link.loss,
                "trace": bool(g.link.trace_points()),
            }
            for g in scenario.devices
        ],
        "links": [
            {
                "between": list(link.between),
                "bandwidth_mbps": link.bandwidth_mbps,
                "rtt_ms": link.rtt_ms,
                "loss": link.loss,
                "trace": bool(link.trace_points()),
            }
            for link in scenario.links
        ],
    }


def _label(bw: float, rtt: float, loss: float = 0.0) -> str:
    bw_s = f"{bw / 1000:g} Gbit/s" if bw >= 1000 else f"{bw:g} Mbit/s"
    s = f"{bw_s} · {rtt:g} ms"
    if loss:
        s += f" · {100 * loss:g}% loss"
    return s


def topology_svg(topo: dict[str, Any]) -> Markup:
    """An SVG diagram of ``topology_json`` output (self-contained, scales to its container)."""
    cloud = topo["cloud"]["name"]
    kinds: dict[str, str] = {cloud: "cloud"}
    parent: dict[str, str | None] = {cloud: None}
    for e in topo["edge_servers"]:
        kinds[e["name"]] = e["kind"]
        parent[e["name"]] = e["parent"]
    groups = {f"group:{g['name']}": g for g in topo["device_groups"]}
    for key, g in groups.items():
        kinds[key] = "devices"
        parent[key] = g["attach"]
    children: dict[str, list[str]] = {n: [] for n in parent}
    for n, p in parent.items():
        if p is not None and p in children:
            children[p].append(n)

    depth: dict[str, int] = {}

    def _depth(n: str) -> int:
        if n not in depth:
            p = parent[n]
            depth[n] = 0 if p is None or p not in parent else _depth(p) + 1
        return depth[n]

    for n in parent:
        _depth(n)
    max_edge_depth = max((d for n, d in depth.items() if kinds[n] != "devices"), default=0)
    for key in groups:  # device groups share the bottom row
        depth[key] = max_edge_depth + 1

    # tidy layout: leaves take successive slots, a parent sits over its children
    x: dict[str, float] = {}
    slot = [0]

    def _place(n: str) -> float:
        kids = children[n]
        if not kids:
            x[n] = slot[0]
            slot[0] += 1
        else:
            xs = [_place(k) for k in kids]
            x[n] = (min(xs) + max(xs)) / 2
        return x[n]

    _place(cloud)
    for n in parent:  # unreachable nodes (should not happen after validation)
        if n not in x:
            x[n] = slot[0]
            slot[0] += 1
    n_slots = max(slot[0], 1)
    width = n_slots * _SLOT + 40
    height = (max(depth.values()) + 1) * _LEVEL + 20

    def pos(n: str) -> tuple[float, float]:
        return 20 + x[n] * _SLOT + _SLOT / 2, 20 + depth[n] * _LEVEL + _BOX_H / 2

    out: list[str] = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' font-family='system-ui,sans-serif' font-size='12' "
        "role='img' aria-label='scenario topology'>"
    ]

    def edge(a: str, b: str, label: str, dashed: bool) -> None:
        (x1, y1), (x2, y2) = pos(a), pos(b)
        if y1 > y2:
            (x1, y1), (x2, y2) = (x2, y2), (x1, y1)
        y1 += _BOX_H / 2
        y2 -= _BOX_H / 2
        if y1 >= y2:  # same level: join the sides
            y1 = y2 = (y1 + y2) / 2
        dash = " stroke-dasharray='6 4'" if dashed else ""
        out.append(
            f"<line x1='{x1:.0f}' y1='{y1:.0f}' x2='{x2:.0f}' y2='{y2:.0f}' stroke='#8a93a3' "
            f"stroke-width='1.6'{dash}/>"
        )
        # a slanted link's label sits nearer its lower end, clear of its siblings' labels
        t = 0.5 if abs(x1 - x2) < 1 else 0.7
        mx, my = x1 + t * (x2 - x1), y1 + t * (y2 - y1)
        w = 7 * len(label) + 8
        out.append(
            f"<rect x='{mx - w / 2:.0f}' y='{my - 9:.0f}' width='{w}' height='17' rx='3' "
            "fill='white' fill-opacity='0.92'/>"
            f"<text x='{mx:.0f}' y='{my + 4:.0f}' text-anchor='middle' fill='#344' "
            f"font-size='11'>{escape(label)}</text>"
        )

    for link in topo["links"]:
        a, b = link["between"]
        if a in parent and b in parent:
            lab = _label(link["bandwidth_mbps"], link["rtt_ms"], link.get("loss", 0.0))
            edge(a, b, lab + (" · trace" if link.get("trace") else ""), bool(link.get("trace")))
    for key, g in groups.items():
        if g["attach"] in parent:
            lab = _label(g["bandwidth_mbps"], g["rtt_ms"], g.get("loss", 0.0))
            edge(g["attach"], key, lab, bool(g.get("trace")))

    for n, kind in kinds.items():
        cx, cy = pos(n)
        fill, stroke = _COLORS.get(kind, _COLORS["micro"])
        if kind == "devices":
            g = groups[n]
            title, sub = f"{g['name']} × {g['count']}", f"profile {g['profile']}"
        elif kind == "cloud":
            title, sub = n, "cloud"
        else:
            title, sub = n, f"{kind} base station"
        out.append(
            f"<g><rect x='{cx - _BOX_W / 2:.0f}' y='{cy - _BOX_H / 2:.0f}' width='{_BOX_W}' "
            f"height='{_BOX_H}' rx='8' fill='{fill}' stroke='{stroke}' stroke-width='1.5'/>"
            f"<text x='{cx:.0f}' y='{cy - 3:.0f}' text-anchor='middle' font-weight='600' "
            f"fill='#1d2330'>{escape(title)}</text>"
            f"<text x='{cx:.0f}' y='{cy + 13:.0f}' text-anchor='middle' fill='#556' "
            f"font-size='11'>{escape(sub)}</text></g>"
        )
    out.append("</svg>")
    return Markup("".join(out))
