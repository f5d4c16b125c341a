"""D2D in a deployed run: the neighbour devices' agents execute the work the plan sends them.

With ``settings.offloading.d2d`` and ``placement: plan``, every device's D2D neighbours
(``OffloadPlanner.neighbors``: the next devices attached to the same node) that run as
agents in this deployment become reachable helpers: each helper's agent listens with a
``runtime.peer.PeerService`` (over mutual TLS with the helper device's certificate when
the deployment uses TLS), each requester reaches it over a ``LinkEmulator`` of the
scenario's D2D link, and the requester's ``AdaptivePlan`` keeps the ``d2d:<helper>``
options. Results stay the requester's: stored and delivered once by it.
"""

from __future__ import annotations

import time
from typing import Any

from edgeintel.pipeline.stages.runtime_results import Deployment, percentiles

__all__ = ["d2d_helpers", "d2d_section", "start_peers", "stop_peers"]


def d2d_helpers(
    sc: Any, planner: Any, devices: list[Any], agents: set[str]
) -> dict[str, list[str]]:
    """device -> its D2D helpers that run as agents here (empty without ``d2d``); only
    devices placed by the plan (the planner chooses D2D)."""
    from edgeintel.runtime.settings import DeployPlacement

    dep = sc.settings.runtime.deploy
    if planner is None or sc.settings.offloading.d2d is None:
        return {}
    out: dict[str, list[str]] = {}
    for d in devices:
        if d.name not in agents or dep.placement_of(d.group) is not DeployPlacement.PLAN:
            continue
        helpers = [nb.name for nb in planner.neighbors(sc, d) if nb.name in agents]
        if helpers:
            out[d.name] = helpers
    return out


def start_peers(run: Deployment, helpers: dict[str, list[str]], sc: Any, tokens: Any) -> None:
    """A ``PeerService`` per helper device (its agent answers), and each requester's
    transport to each of its helpers over the emulated D2D link (``agent.peers``)."""
    from edgeintel.runtime.auth import Authenticator, Unauthorized
    from edgeintel.runtime.peer import PeerService
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator
    from edgeintel.topology import LinkSpec

    d2d = sc.settings.offloading.d2d
    dep = sc.settings.runtime.deploy
    auth = Authenticator(tokens)

    def authorize(token: str, peer: Any) -> str | None:
        name = auth.device(token, peer)
        if name is None and (auth.enabled or peer is not None):
            raise Unauthorized("D2D requests come from devices of this deployment")
        return name

    agents = {a.name: a for a, _, _ in run.agents}
    index = {a.name: i for i, (a, _, _) in enumerate(run.agents)}
    for name in sorted({h for hs in helpers.values() for h in hs}):
        tls = None if run.pki is None else run.pki.devices[name]
        run.peers[name] = PeerService(agents[name], tls=tls, authorize=authorize).start()
    link = LinkSpec(bandwidth_mbps=d2d.bandwidth_mbps, rtt_ms=d2d.rtt_ms)
    origin = time.time()
    for name, hs in helpers.items():
        tls = None if run.pki is None else run.pki.devices[name]
        for h in hs:
            em = LinkEmulator(
                HttpTransport(run.peers[h].address, max_connections=2, tls=tls),
                link,
                seed=sc.seed + 7919 * (1 + index[name]) + index[h],
                clock=time.time,
                start=origin,
                time_scale=dep.trace_time_scale,
            )
            agents[name].peers[h] = em
            run.d2d_links[f"{name} -> {h}"] = em


def stop_peers(run: Deployment) -> None:
    """Close the requesters' D2D transports, then stop the helpers' services."""
    for em in run.d2d_links.values():
        em.close()
    for svc in run.peers.values():
        svc.stop()


def d2d_section(run: Deployment, d2d: Any) -> dict[str, Any]:
    """``results.runtime.d2d``: requests each helper served (per requester), what each
    requester sent over D2D, the D2D link's bytes and the requesters' D2D latency."""
    served = {h: dict(sorted(svc.served.items())) for h, svc in sorted(run.peers.items())}
    sent = {
        a.name: a.stats.placements.get("d2d", 0)
        for a, _, _ in run.agents
        if a.peers and a.stats.placements.get("d2d", 0)
    }
    lat = [v for a, _, _ in run.agents for v in a.stats.latency_ms.get("d2d", [])]
    return {
        "link": {"bandwidth_mbps": d2d.bandwidth_mbps, "rtt_ms": d2d.rtt_ms},
        "helpers": sorted(run.peers),
        "requests_served": sum(sum(v.values()) for v in served.values()),
        "served": served,
        "refused": sum(svc.refused for svc in run.peers.values()),
        "results_by_requester": sent,
        "latency": percentiles(lat),
        "links": {
            k: {
                "requests": em.stats.requests,
                "bytes_up": em.stats.bytes_up,
                "bytes_down": em.stats.bytes_down,
                "lost": em.stats.lost,
            }
            for k, em in sorted(run.d2d_links.items())
            if em.stats.requests
        },
    }
