"""The ``runtime`` stage: deploy the scenario on this machine and measure it running.

When ``settings.runtime.deploy.enabled``: the run's model goes into a model
repository; one ``edgeintel serve`` process per serving node (each edge server
with devices attached, or the cloud) starts on loopback with a bearer token per
device and a result sink; every device runs as an agent (threads in this
process) replaying its share of the data at the real rate through its
emulated link, offloading per the placement and falling back locally; then the
servers get SIGTERM (graceful) and the section records latency per placement,
throughput, bytes per link, results delivered vs produced and a timeline.
Servers are stopped in ``finally`` (Ctrl-C or a failing component included).
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, EdgeIntelError
from edgeintel.pipeline.core import RunContext, Stage, register_stage
from edgeintel.pipeline.sections import runtime_section as _section_renderer  # noqa: F401  (registers it)
from edgeintel.pipeline.stages.runtime_keys import (
    deployment_tokens,
    issue_pki,
    signing_key,
    verified_session,
    verify_key,
)
from edgeintel.pipeline.stages.runtime_results import (
    Deployment,
    latency_figure,
    runtime_section,
    timeline_figure,
)
from edgeintel.runtime.nodes import ServerProcess, drain_upstream, free_port, write_node_config

__all__ = ["RuntimeStage"]


@register_stage
class RuntimeStage(Stage):
    """Deploy servers and device agents as real processes/threads and measure the system."""

    name = "runtime"
    order = 90
    title = "Runtime"

    def enabled(self, ctx: RunContext) -> bool:
        return bool(ctx.scenario.settings.runtime.deploy.enabled)

    def run(self, ctx: RunContext) -> None:
        from edgeintel.data.device_data import input_interval_s
        from edgeintel.runtime.repository import add_model
        from edgeintel.runtime.settings import DEVICES, DeployPlacement, parse_address

        if ctx.artifact is None:
            raise EdgeIntelError("the runtime stage needs the exported model (export stage)")
        sc = ctx.scenario
        rt = sc.settings.runtime
        dep = rt.deploy
        folder = ctx.run_dir / "runtime"
        (folder / "devices").mkdir(parents=True, exist_ok=True)
        repo = folder / "repo"
        signer = signing_key(dep.signing_key, folder)
        task = (ctx.artifact.extra or {}).get("task")  # what the outputs mean, for the servers
        add_model(
            repo, "model", ctx.artifact.path, 1, labels=ctx.artifact.labels, signer=signer,
            task=task,
        )  # fmt: skip
        devices = list(enumerate(ctx.devices))[: dep.max_devices]
        placements = {d.name: dep.placement_of(d.group) for _, d in devices}
        tokens = deployment_tokens(dep.tokens_file, [d.name for _, d in devices], sc)
        tokens_file = folder / "tokens.json"
        tokens_file.write_text(json.dumps(tokens.to_json()))
        tokens_file.chmod(0o600)
        operator = next(iter(tokens.operators.values()), None)
        cloud = sc.cloud.name
        uses_cloud = any(
            p in (DeployPlacement.CLOUD, DeployPlacement.PLAN) for p in placements.values()
        )
        serving = sorted({d.attach for _, d in devices} | ({cloud} if uses_cloud else set()))
        where: dict[str, tuple[str, int]] = {}
        for name in serving:
            if name in dep.addresses:
                where[name] = parse_address(dep.addresses[name])
            else:
                where[name] = ("127.0.0.1", free_port())
        pki = issue_pki(ctx, folder, where, [d.name for _, d in devices]) if dep.tls else None
        nodes = {
            name: ServerProcess(
                name, h, p, remote=not dep.starts(name), tls=None if pki is None else pki.operator
            )
            for name, (h, p) in where.items()
        }
        run = Deployment(nodes, placements, input_interval_s(ctx.require_dataset(), rt.rate_hz))
        run.pki = pki
        splits: dict[bytes, Any] = {}
        planner_state = None
        if dep.starts(DEVICES) and DeployPlacement.PLAN in placements.values():
            planner_state, splits = _planner(ctx, repo, folder / "splits", devices, signer)
        origin_file = folder / "trace_origin"  # t = 0 of the link traces, for the servers
        origin_file.unlink(missing_ok=True)
        try:
            _start_servers(ctx, nodes, repo, folder, tokens_file, origin_file, pki)
            if dep.starts(DEVICES):
                helpers = _add_agents(ctx, run, devices, tokens, (planner_state, splits), folder)
                if helpers:  # D2D: the helpers' agents execute their neighbours' work
                    from edgeintel.pipeline.stages.runtime_d2d import start_peers

                    start_peers(run, helpers, sc, tokens)
                    ctx.log(f"runtime: D2D helpers listening: {', '.join(run.peers)}")
                driver = None
                if dep.lifecycle.enabled:  # rollouts on the running fleet
                    from edgeintel.pipeline.stages.lifecycle_drive import LifecycleDriver

                    edges = {d.attach: nodes[d.attach] for _, d in devices}
                    driver = LifecycleDriver(dep.lifecycle, edges, operator, repo, signer,
                                             list(ctx.artifact.labels), task)  # fmt: skip
                    driver.start()
                retrain = _retrain_driver(ctx, run, devices, operator, repo, signer)
                _run_agents(ctx, run, origin_file)
                if driver is not None:
                    driver.stop()
                    run.lifecycle = driver.record
                if retrain is not None:
                    retrain.stop()
                    run.retrain = retrain.record
                ctx.log(f"runtime: agents done in {run.wall:.1f} s; forwarding to the cloud")
                drain_upstream(nodes, cloud, operator, dep.drain_timeout_s)
            else:
                with ctx.task(f"Serving {', '.join(nodes)}", total=1) as advance:
                    time.sleep(dep.duration_s + dep.drain_timeout_s)
                    advance()
            for name, node in nodes.items():
                run.server_stats[name] = node.stats(operator)
            ctx.log("runtime: stopping servers")
        finally:
            if run.peers:
                from edgeintel.pipeline.stages.runtime_d2d import stop_peers

                stop_peers(run)
            for _, _, transport in run.agents:
                transport.close()
            for node in nodes.values():
                node.stop()
        ctx.results["runtime"] = section = runtime_section(ctx, run)
        if run.peers:
            from edgeintel.pipeline.stages.runtime_d2d import d2d_section

            section["d2d"] = d2d_section(run, ctx.scenario.settings.offloading.d2d)
        for _, store, _ in run.agents:
            store.close()
        _add_figures(ctx, run)


def _retrain_driver(
    ctx: RunContext, run: Deployment, devices: list[tuple[int, Any]], operator: str | None,
    repo: Path, signer: Any,
) -> Any:  # fmt: skip
    """The retrain loop beside the agents (``lifecycle.retrain.on_drift``), started; None
    when it is off."""
    from edgeintel.pipeline.stages.retrain_drive import RetrainDriver

    dep = ctx.scenario.settings.runtime.deploy
    if not dep.lifecycle.retrain.on_drift:
        return None
    if ctx.model is None:
        raise EdgeIntelError(
            "settings.runtime.deploy.lifecycle.retrain.on_drift fine-tunes the run's trained "
            "model; run the train (or edge_train) stage with the runtime stage"
        )
    attach = {d.name: d.attach for _, d in devices}
    agents: dict[str, list[Any]] = {}
    for a, _, _ in run.agents:
        agents.setdefault(attach[a.name], []).append(a)
    driver = RetrainDriver(
        dep.lifecycle.retrain, {n: run.nodes[n] for n in agents}, agents, operator,
        None if run.pki is None else run.pki.operator, repo, signer, ctx.model, ctx.artifact,
        ctx.scenario.seed,
    )  # fmt: skip
    driver.start()
    return driver


def _start_servers(
    ctx: RunContext,
    nodes: dict[str, ServerProcess],
    repo: Path,
    folder: Path,
    tokens_file: Path,
    origin_file: Path,
    pki: Any,
) -> None:
    """Start an ``edgeintel serve`` for every node started here (an edge server relays to
    the cloud, over its emulated backhaul when links are emulated; over mutual TLS with
    the node's certificate from ``pki`` unless it is None); wait until all answer."""
    sc = ctx.scenario
    dep = sc.settings.runtime.deploy
    cloud = sc.cloud.name
    with ctx.task("Starting servers", total=1) as advance:
        for name, node in nodes.items():
            if node.remote:
                continue
            aside = name in ctx.result_cache_aside  # the caching stage's decision
            node_cfg = write_node_config(folder / f"{name}.node.json", sc, name, not aside)
            extra = ["--node-config", str(node_cfg), "--verify-key", str(verify_key(folder))]
            if pki is not None:
                tls = pki.nodes[name]
                extra += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
                extra += ["--tls-ca", str(tls.ca), "--tls-crl", str(tls.crl)]
            if name != cloud and cloud in nodes:
                extra += ["--upstream", nodes[cloud].address]
                if dep.emulate_links:
                    extra += [
                        "--emulate-link",
                        "--trace-origin-file",
                        str(origin_file),
                        "--trace-time-scale",
                        repr(dep.trace_time_scale),
                    ]
            node.start(repo, folder, tokens_file, extra)
        for node in nodes.values():
            node.wait_ready()
        advance()
    ctx.log(f"runtime: servers ready: {', '.join(f'{n} {v.address}' for n, v in nodes.items())}")


def _add_agents(
    ctx: RunContext,
    run: Deployment,
    devices: list[tuple[int, Any]],
    tokens: Any,
    planning: tuple[Any, dict[bytes, Any]],
    folder: Path,
) -> dict[str, list[str]]:
    """One ``DeviceAgent`` per device with data: its link emulator, filter, plan and store;
    returns each device's D2D helpers among the agents (``runtime_d2d.d2d_helpers``)."""
    from edgeintel.inference.runtimes.base import get_runtime
    from edgeintel.pipeline.stages.retrain_drive import drift_watch
    from edgeintel.pipeline.stages.runtime_d2d import d2d_helpers
    from edgeintel.pipeline.stages.runtimes_delivery import device_runtime_artifacts
    from edgeintel.runtime.agent import DeviceAgent, DeviceStream
    from edgeintel.runtime.store import DeviceStore
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, Transport

    assert ctx.artifact is not None
    sc = ctx.scenario
    rt = sc.settings.runtime
    dep = rt.deploy
    planner_state, splits = planning
    store_secret = None
    if rt.store.encrypt:  # one secret per run (0600); each device's key derived from it
        from edgeintel.security.store_crypto import (
            device_key,
            generate_store_secret,
            load_store_secret,
        )

        store_secret = load_store_secret(generate_store_secret(folder / "keys" / "store.key"))
    # the agents run the repository's signed copy, verified like the servers verify theirs
    session = verified_session(folder / "repo" / "model" / "1" / "model.onnx", folder)
    # devices whose profile names another runtime run the same model exported to it
    runtime_files = device_runtime_artifacts(
        ctx,
        {d.profile.runtime for _, d in devices},
        folder / "repo" / "model" / "1" / "model.onnx",
        folder / "device_runtimes",
    )
    origin = time.time()
    arrays = {i: ctx.device_arrays(i) for i, _ in devices}
    names = {d.name for i, d in devices if len(arrays[i][0])}
    retrain = dep.lifecycle.retrain
    if retrain.shift_at_s is not None:  # the drift the run plays: other devices' data
        from edgeintel.pipeline.stages.retrain_drive import shifted_stream

        have = [i for i, _ in devices if len(arrays[i][0])]
        onset = math.ceil(retrain.shift_at_s / run.interval)
        if retrain.on_drift and onset < retrain.reference:
            raise ConfigError(
                f"settings.runtime.deploy.lifecycle.retrain.shift_at_s: the drift would start "
                f"at input {onset}, inside the devices' reference of {retrain.reference} "
                f"inputs; expected >= {retrain.reference * run.interval:g} s"
            )
        limit = max(1, math.ceil(dep.duration_s / run.interval))
        arrays = {
            i: shifted_stream(arrays[i], arrays[have[(p + len(have) // 2) % len(have)]],
                              onset, limit)
            for p, i in enumerate(have)
        }  # fmt: skip
        ctx.log(f"runtime: drift played from input {onset} (another device's data)")
    helpers = d2d_helpers(sc, planner_state and planner_state[0], [d for _, d in devices], names)
    for i, d in devices:
        x, y = arrays[i]
        if len(x) == 0:
            continue
        x = x.astype(np.float32)
        tls = None if run.pki is None else run.pki.devices[d.name]
        transport: Transport = HttpTransport(run.nodes[d.attach].address, tls=tls)
        em = LinkEmulator(
            transport,
            d.link,
            seed=sc.seed + i,
            clock=time.time,
            start=origin,
            time_scale=dep.trace_time_scale,
        )
        run.emulators.append(em)  # its trace time drives the plan even unshaped
        if dep.emulate_links:
            run.links[d.name] = em
            transport = em
        filt, info = _device_filter(ctx, d.name, x, session)
        if filt is not None:
            run.filters[d.name] = filt
        if info:
            run.filter_source[d.name] = info
        plan = _plan(run.placements[d.name], d, sc, (planner_state, splits), em,
                     frozenset(helpers.get(d.name, ())))  # fmt: skip
        run.plans[d.name] = plan
        updater = None
        following = dep.lifecycle.enabled or retrain.on_drift  # agents follow rollouts
        if following and d.profile.runtime not in runtime_files:
            from edgeintel.runtime.updater import ModelUpdater
            from edgeintel.security.signing import ArtifactVerifier

            updater = ModelUpdater(
                "model", folder / "devices" / f"{d.name}.models", transport,
                {"Authorization": f"Bearer {tokens.devices[d.name]}"},
                verify=ArtifactVerifier(verify_key(folder)),
            )  # fmt: skip
        key = None if store_secret is None else device_key(store_secret, d.name)
        store = DeviceStore(folder / "devices" / f"{d.name}.db", rt.store, key=key)
        run.reopen[d.name] = functools.partial(
            DeviceStore, folder / "devices" / f"{d.name}.db", rt.store, key=key
        )  # a rebooted device opens its store again (deploy.churn)
        agent = DeviceAgent(
            d.name,
            DeviceStream(x, y, run.interval),
            session,
            store,
            transport,
            model="model",
            plan=plan,
            filter=filt,
            token=tokens.devices[d.name],
            settings=rt,
            server_node=d.attach,
            task=ctx.task_kind(),  # results carry the kind's output (label, value, alarm)
            updater=updater,  # follows the server's rollouts (deploy.lifecycle)
            drift=(
                drift_watch(retrain, x, session, run.interval, sc.seed + i)
                if retrain.on_drift
                else None
            ),
            # one loaded artifact per agent: runtimes' requests are not shared across threads
            predictor=(
                get_runtime(d.profile.runtime).load(runtime_files[d.profile.runtime])
                if d.profile.runtime in runtime_files
                else None
            ),
        )
        run.agents.append((agent, store, transport))
    ctx.log(f"runtime: {len(run.agents)} agents ready (filters, plans); starting")
    return helpers


def _run_agents(ctx: RunContext, run: Deployment, origin_file: Path) -> None:
    """Start the link traces (here and, through ``origin_file``, upstream) and every agent
    in its thread; wait for them (halting stragglers) and record the wall time."""
    dep = ctx.scenario.settings.runtime.deploy
    limit = max(1, math.ceil(dep.duration_s / run.interval))
    origin = time.time()  # the traces start with the agents, here and upstream
    origin_file.write_text(repr(origin))
    for em in run.emulators:
        em.start = origin
    with ctx.task(f"Running {len(run.agents)} device agents", total=1) as advance:
        churn = None
        if dep.churn:  # devices join, leave and reboot on a schedule
            from edgeintel.pipeline.stages.churn_drive import ChurnDriver

            churn = ChurnDriver(dep.churn, run, {}, run.reopen, limit, dep.duration_s,
                                dep.drain_timeout_s)  # fmt: skip
        joiners = set() if churn is None else churn.joiners
        threads = {
            a.name: threading.Thread(
                target=a.run,
                args=(limit, dep.duration_s, dep.drain_timeout_s),
                name=f"agent-{a.name}",
                daemon=True,
            )
            for a, _, _ in run.agents
            if a.name not in joiners
        }
        if churn is not None:
            churn.threads = threads
        t0 = time.perf_counter()
        for t in list(threads.values()):
            t.start()
        if churn is not None:
            churn.start()
        deadline = time.monotonic() + dep.duration_s + dep.drain_timeout_s + 60
        try:
            while time.monotonic() < deadline:  # the churn adds and replaces threads
                if (churn is None or churn.done) and not any(
                    t.is_alive() for t in list(threads.values())
                ):
                    break
                time.sleep(0.1)
        finally:
            if churn is not None:
                churn.stop()
                run.churn = churn.record
            for a, _, _ in run.agents:
                a.halt()
        run.wall = time.perf_counter() - t0
        advance()


def _add_figures(ctx: RunContext, run: Deployment) -> None:
    """Latency per placement and the placement timeline, for the report."""
    dep = ctx.scenario.settings.runtime.deploy
    by_placement: dict[str, list[float]] = {}
    for a, _, _ in run.agents:
        for k, v in a.stats.latency_ms.items():
            by_placement.setdefault(k, []).extend(v)
    if by_placement:
        ctx.add_figure(
            "runtime",
            "Latency per placement",
            latency_figure(by_placement),
            "Per-result latency (ms) measured by the device agents: on the device, "
            "offloaded to the edge server or through it to the cloud over the emulated "
            "links, split, local fallback, and reused (filter skipped the input).",
        )
    tl = ctx.results["runtime"]["timeline_per_s"]
    if tl:
        ctx.add_figure(
            "runtime",
            "Placements over the run",
            timeline_figure(tl, dep.trace_time_scale),
            "Results per second by placement; the top axis is the time of the link "
            "traces (congestion and outages) at the run's trace time scale.",
        )


def _device_filter(
    ctx: RunContext, name: str, x: np.ndarray, session: Any
) -> tuple[Any, dict[str, Any]]:
    """The device's redundancy filter (``caching.filter.AdaptiveFilter``): the threshold the
    caching stage tuned for it, else tuned here on the device's first profiling segment
    (standing aside, as the caching stage decides, where it would cost more than the
    caching stage's timed model saves); (None, {}) when caching or its filter is off."""
    from edgeintel.runtime.wiring import filter_for_device

    cs = ctx.scenario.settings.caching
    if not (cs.enabled and cs.filter.enabled) or len(x) < 4:
        return None, {}
    model_ms = (ctx.results.get("caching") or {}).get("model_p50_ms_here")
    return filter_for_device(
        cs.filter, x, session, ctx.filter_thresholds.get(name), ctx.task_kind(), model_ms
    )


def _planner(
    ctx: RunContext,
    repo: Path,
    folder: Path,
    devices: list[tuple[int, Any]],
    signer: Any,
) -> tuple[Any, dict[bytes, Any]]:
    """The offloading planner over the run's model (the offloading stage's profile, or one
    measured now) and every split its options may choose over the link traces: each cut
    into head/tail ONNX, the tail served as ``model_tail_<k>_<hash>``."""
    import hashlib

    from edgeintel.offloading.planner import OffloadPlanner, trace_times
    from edgeintel.offloading.scenario_plan import plan_scenario
    from edgeintel.offloading.split import split_model
    from edgeintel.runtime.repository import add_model
    from edgeintel.runtime.wiring import SplitTail, mask_key
    from edgeintel.security.signing import sign_file

    assert ctx.artifact is not None
    sc = ctx.scenario
    result = ctx.offloading_plan
    if result is None:
        x_te, _ = ctx.test_arrays()
        result = plan_scenario(sc, ctx.artifact.path, folder.parent / "offloading", x_te[:1])
    planner = OffloadPlanner(result.graph, result.profile, sc.settings.offloading)
    planned = result.graph.path or ctx.artifact.path
    initial = {
        name: result.problem.options[d][c].label
        for d, (name, c) in enumerate(zip(result.problem.devices, result.plan.choice, strict=True))
    }
    splits: dict[bytes, Any] = {}
    seen_groups: set[str] = set()
    everyone = {d.name for d in sc.expand_devices()}
    for _, d in devices:
        if d.group in seen_groups:
            continue
        seen_groups.add(d.group)
        excluded = frozenset(
            ({e.name for e in sc.edge_servers} - {d.attach}) | (everyone - {d.name})
        )
        for t in trace_times(sc):
            for o in planner.options(sc, d, t, excluded):
                if o.tier != "hybrid" or o.mask is None or mask_key(o.mask) in splits:
                    continue
                k = int(o.mask.sum())
                tag = hashlib.sha256(mask_key(o.mask)).hexdigest()[:8]
                # the cut belongs to the model it was planned on (the artifact the devices
                # receive, maybe quantized), not necessarily the exported fp32 model
                sm = split_model(planned, result.graph, o.mask, folder / f"cut{k}_{tag}")
                assert sm.head_path is not None and sm.tail_path is not None
                name = f"model_tail_{k}_{tag}"
                add_model(
                    repo, name, sm.tail_path, 1, labels=ctx.artifact.labels, signer=signer,
                    task=(ctx.artifact.extra or {}).get("task"),  # the model's own outputs
                )  # fmt: skip
                sign_file(sm.head_path, signer)  # the device's half, verified before loading
                head = verified_session(Path(sm.head_path), folder.parent)
                splits[mask_key(o.mask)] = SplitTail(name, head)
    return (planner, initial), splits


def _plan(
    placement: Any, device: Any, sc: Any, planning: Any, link: Any, peers: frozenset[str]
) -> Any:
    from edgeintel.runtime.seams import StaticPlan
    from edgeintel.runtime.settings import DeployPlacement
    from edgeintel.runtime.wiring import AdaptivePlan

    if placement is DeployPlacement.PLAN:
        (planner, initial), splits = planning
        return AdaptivePlan(
            planner, sc, device, link.trace_time, splits, initial=initial.get(device.name),
            peers=peers,
        )  # fmt: skip
    # the same static plans as `edgeintel device --tier` (device, edge, cloud)
    return StaticPlan.for_tier(str(placement), device.attach, sc.cloud.name)
