"""CLI commands of the runtime (registered on the main ``edgeintel`` app by cli.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeintel.errors import ConfigError
from edgeintel.runtime.auth import load_tokens

__all__ = ["deploy_overrides", "device_cmd", "export_repo_cmd", "load_tokens", "serve_cmd"]


def deploy_overrides(addresses: list[str] | None, only: list[str] | None) -> list[str]:
    """``edgeintel run --address NODE=HOST:PORT --only PART`` as ``--set`` assignments of
    ``settings.runtime.deploy`` (checked against the scenario when it is validated)."""
    from edgeintel.runtime.settings import parse_address

    out = []
    for item in addresses or []:
        node, sep, addr = item.partition("=")
        if not sep or not node.strip() or "." in node:
            raise ConfigError(
                f"--address {item!r}: expected NODE=HOST:PORT, e.g. edge-a=10.0.0.2:8000"
            )
        try:
            parse_address(addr)
        except ValueError as exc:
            raise ConfigError(f"--address {item!r}: {exc}") from None
        out.append(f"settings.runtime.deploy.addresses.{node.strip()}={json.dumps(addr.strip())}")
    if only:
        out.append(f"settings.runtime.deploy.only={json.dumps([o.strip() for o in only])}")
        out.append("settings.runtime.deploy.enabled=true")
    if addresses:
        out.append("settings.runtime.deploy.enabled=true")
    return out


def serve_cmd(
    repository: Annotated[Path, typer.Argument(help="Model repository (Triton layout).")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    tokens: Annotated[
        Path | None, typer.Option(help="JSON/YAML mapping device -> bearer token (auth on).")
    ] = None,
    sink: Annotated[
        Path | None, typer.Option(help="SQLite file storing results forwarded by devices.")
    ] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="1 turns batching off.")] = 32,
    max_queue_delay_us: Annotated[int, typer.Option(min=0)] = 2000,
    queue_capacity: Annotated[int, typer.Option(min=1)] = 1024,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads.")] = 1,
    max_request_bytes: Annotated[int, typer.Option(min=1024)] = 16 * 1024 * 1024,
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="Scenario: when its caching is enabled, its result cache goes in front of "
            "each model; with --node and --upstream, its backhaul links."
        ),
    ] = None,
    node_config: Annotated[
        Path | None,
        typer.Option(
            help="JSON written by `edgeintel run` instead of --scenario: "
            '{"result_cache": {...} | null, "backhaul": [link, ...]} (loads no scenario).'
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(help="This node's name in the scenario (an edge server relays to the cloud)."),
    ] = None,
    upstream: Annotated[
        str | None, typer.Option(help="host:port of the cloud this edge server relays to.")
    ] = None,
    emulate_link: Annotated[
        bool, typer.Option(help="Shape upstream traffic like the scenario's backhaul links.")
    ] = False,
    trace_origin: Annotated[
        float | None,
        typer.Option(help="Unix time (s) at which the link traces start (default: now)."),
    ] = None,
    trace_origin_file: Annotated[
        Path | None,
        typer.Option(
            help="A file whose content is that Unix time, written when the run starts "
            "(the traces stand at t = 0 until it exists)."
        ),
    ] = None,
    trace_time_scale: Annotated[
        float, typer.Option(min=0.001, help="Trace seconds per second of wall clock.")
    ] = 1.0,
) -> None:
    """Serve a model repository over the Open Inference Protocol v2 (KServe/Triton HTTP)."""

    from edgeintel.cli import guard
    from edgeintel.runtime.server import serve
    from edgeintel.runtime.settings import BatchingSettings, ServerSettings, parse_address
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, PathLink, Transport

    with guard():
        batching = BatchingSettings(
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            queue_capacity=queue_capacity,
        )
        settings = ServerSettings(
            intra_op_threads=threads, max_request_bytes=max_request_bytes, batching=batching
        )
        if scenario is not None and node_config is not None:
            raise ConfigError("give --scenario or --node-config, not both")
        rcs, hops = _node_setup(scenario, node_config, node, upstream is not None)
        cache = features = None
        if rcs is not None:
            from edgeintel.runtime.wiring import input_features, server_cache

            def cache(model: str, version: str) -> Any:
                return server_cache(rcs, node or "node")

            features = input_features
        table = load_tokens(tokens)
        up: Transport | None = None
        up_name = up_token = None
        if upstream is not None:
            try:
                host_, port_ = parse_address(upstream)
            except ValueError as exc:
                raise ConfigError(f"--upstream: {exc}") from None
            up_name = hops[1]
            up = HttpTransport(f"{host_}:{port_}")
            if emulate_link:
                up = LinkEmulator(
                    up,
                    PathLink(tuple(hops[0])),
                    seed=0,
                    clock=_trace_clock(trace_origin, trace_origin_file),
                    start=0.0,
                    time_scale=trace_time_scale,
                )
            if table is not None and node is not None:
                up_token = table.nodes.get(node)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per relayed request
        serve(
            repository,
            host,
            port,
            settings,
            table,
            sink,
            cache,
            features,
            node,
            up,
            up_name,
            up_token,
        )


def _node_setup(
    scenario: Path | None, node_config: Path | None, node: str | None, relays: bool
) -> tuple[Any, tuple[list[Any], str]]:
    """(result cache settings or None, (backhaul links, upstream name)) of a node, from a
    scenario (``--scenario``, ``--node``) or a node config file (``--node-config``)."""
    from pydantic import ValidationError

    from edgeintel.caching.settings import ResultCacheSettings
    from edgeintel.cli import _load
    from edgeintel.errors import format_validation_error
    from edgeintel.topology import LinkSpec

    if node_config is not None:
        try:
            raw = json.loads(node_config.read_text(encoding="utf-8"))
            rc = raw.get("result_cache")
            rcs = None if rc is None else ResultCacheSettings.model_validate(rc)
            hops = [LinkSpec.model_validate(h) for h in raw.get("backhaul", [])]
            upstream_name = str(raw.get("upstream", "cloud"))
        except (OSError, ValueError, AttributeError) as exc:
            if isinstance(exc, ValidationError):
                raise format_validation_error(exc, str(node_config)) from None
            raise ConfigError(
                f"{node_config}: expected JSON {{result_cache, backhaul, upstream}} ({exc})"
            ) from None
        return rcs, (hops, upstream_name)
    if scenario is None:
        if relays:
            raise ConfigError("--upstream needs --scenario or --node-config (the backhaul)")
        return None, ([], "cloud")
    sc = _load(scenario, None)
    c = sc.settings.caching
    rcs = c.result_cache if c.enabled and c.result_cache.enabled else None
    if not relays:
        return rcs, ([], sc.cloud.name)
    if node not in [e.name for e in sc.edge_servers]:
        raise ConfigError(f"--node: expected an edge server of the scenario, got {node!r}")
    return rcs, (list(sc.topology.links_to_cloud(node)), sc.cloud.name)


def _device_filter(
    sc: Any, device: str, inputs: Any, session: Any, tune: bool, results: Path | None
) -> Any:
    """``edgeintel device --filter`` / ``--filter-from``: caching's ``AdaptiveFilter``."""
    from edgeintel.runtime.wiring import device_filter, tune_device_filter

    fs = sc.settings.caching.filter
    if results is not None:
        try:
            per_device = json.loads(results.read_text())["caching"]["filter"]["per_device"]
            th = per_device[device]["threshold"]
            return device_filter(str(th["feature"]), float(th["threshold"]), fs)
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"--filter-from {results}: no caching filter threshold for {device!r} "
                "(results.caching.filter.per_device)"
            ) from None
    if not tune:
        return None
    name = session.get_inputs()[0].name
    filt, _ = tune_device_filter(inputs, lambda b: session.run(None, {name: b})[0], fs)
    return filt


def _trace_clock(origin: float | None, origin_file: Path | None) -> Callable[[], float]:
    """Seconds since the link traces' origin: ``origin`` (Unix time), else the time read
    from ``origin_file`` once it exists (0 until then), else since now."""
    import time

    start: list[float] = []
    if origin is not None or origin_file is None:
        start.append(origin if origin is not None else time.time())

    def clock() -> float:
        if not start:
            assert origin_file is not None
            try:
                start.append(float(origin_file.read_text().strip()))
            except (OSError, ValueError):
                return 0.0
        return max(0.0, time.time() - start[0])

    return clock


def export_repo_cmd(
    artifacts: Annotated[
        list[Path], typer.Argument(help="Artifact records (<model>.json next to each .onnx).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Repository folder to write.")],
    name: Annotated[str | None, typer.Option(help="Model name (default: file stem).")] = None,
    max_batch_size: Annotated[int, typer.Option(min=0)] = 32,
) -> None:
    """Write ONNX artifacts as a Triton/KServe model repository (versions 1..n under one
    ``--name``, or one model per artifact)."""
    from edgeintel.cli import console, guard
    from edgeintel.models.export import ModelArtifact
    from edgeintel.runtime.repository import export_repository

    with guard():
        arts = []
        for a in artifacts:
            try:
                arts.append(ModelArtifact.load(a))
            except (OSError, ValueError, TypeError):
                raise ConfigError(f"{a}: not a model artifact record (.json)") from None
        mapping = {name: arts} if name else {Path(a.path).stem: a for a in arts}
        root = export_repository(mapping, out, max_batch_size)  # type: ignore[arg-type]
        console.print(f"[green]wrote[/] {root}: {json.dumps(sorted(mapping))}", highlight=False)


def device_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    device: Annotated[str, typer.Option(help="Device name, e.g. phone-0 (<group>-<i>).")],
    onnx: Annotated[Path, typer.Option(help="The device's local (compressed) ONNX model.")],
    store: Annotated[Path, typer.Option(help="SQLite store-and-forward file of this device.")],
    server: Annotated[
        str | None, typer.Option(help="host:port of the device's edge server (none: offline).")
    ] = None,
    model: Annotated[str, typer.Option(help="Model name on the server.")] = "model",
    tier: Annotated[str, typer.Option(help="Placement: device, edge or cloud.")] = "device",
    limit: Annotated[int, typer.Option(min=1, help="Stream indices 0..limit-1 to produce.")] = 100,
    duration_s: Annotated[float | None, typer.Option(help="Stop producing after this.")] = None,
    rate_hz: Annotated[
        float | None, typer.Option(help="Override the stream rate (inputs per second).")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token of this device.")] = None,
    emulate_link: Annotated[
        bool, typer.Option(help="Shape traffic like the device's scenario link.")
    ] = False,
    drain_timeout_s: Annotated[float, typer.Option(min=0)] = 30.0,
    filter_: Annotated[
        bool,
        typer.Option(
            "--filter",
            help="Skip redundant inputs with the caching component's filter, tuned on this "
            "device's first profiling segment (settings.caching.filter); skipped inputs "
            "reuse the last result.",
        ),
    ] = False,
    filter_from: Annotated[
        Path | None,
        typer.Option(help="Use the threshold a run's caching stage tuned (its results.json)."),
    ] = None,
) -> None:
    """Run a device agent: replay its data, infer locally or offload, store and forward."""
    from dataclasses import replace

    from edgeintel.cli import _load, console, guard
    from edgeintel.onnx_files import make_session
    from edgeintel.runtime.agent import DeviceAgent, check_model_preprocessing, device_stream
    from edgeintel.runtime.seams import ExecutionTier, StaticPlan
    from edgeintel.runtime.store import DeviceStore
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, Transport

    with guard():
        sc = _load(scenario, None)
        try:
            plan = StaticPlan(tier=ExecutionTier(tier))
        except ValueError:
            raise ConfigError(f"--tier: expected device, edge or cloud, got {tier!r}") from None
        stream = device_stream(sc, device)
        if rate_hz is not None:
            if rate_hz <= 0:
                raise ConfigError(f"--rate-hz must be > 0, got {rate_hz}")
            stream = replace(stream, interval_s=1.0 / rate_hz)
        transport: Transport | None = None
        if server is not None:
            transport = HttpTransport(server)
            if emulate_link:
                dev = next(d for d in sc.expand_devices() if d.name == device)
                transport = LinkEmulator(transport, dev.link, seed=sc.seed)
        settings = sc.settings.runtime
        check_model_preprocessing(onnx, stream)
        session = make_session(onnx)
        filt = _device_filter(sc, device, stream.inputs, session, filter_, filter_from)
        with DeviceStore(store, settings.store) as st:
            agent = DeviceAgent(
                device,
                stream,
                session,
                st,
                transport,
                model=model,
                plan=plan,
                filter=filt,
                token=token,
                settings=settings,
            )
            try:
                stats = agent.run(limit, duration_s, drain_timeout_s)
            finally:
                if transport is not None:
                    transport.close()
            out = {
                "device": device,
                "inputs": len(stream.inputs),
                "inputs_sha256": stream.digest(),  # to check it streams the run's inputs
                **stats.to_json(),
                "store": dict(st.counters),
                "undelivered": st.size,
            }
        console.print_json(json.dumps(out))
