"""Commands ``serve``, ``export-repo`` and ``device``: the runtime's nodes and agents."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeintel.cli.common import console, guard, load
from edgeintel.errors import ConfigError
from edgeintel.paths import check_out_dir

__all__ = ["device_cmd", "export_repo_cmd", "serve_cmd"]


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
    adaptive_wait: Annotated[
        bool,
        typer.Option(
            help="Never wait to fill a batch: run what is queued when the worker is free "
            "(off: Triton's fixed --max-queue-delay-us wait).",
        ),
    ] = True,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads.")] = 1,
    max_request_bytes: Annotated[int, typer.Option(min=1024)] = 16 * 1024 * 1024,
    body_timeout_s: Annotated[
        float, typer.Option(min=0.01, help="A request body must arrive within this (else 408).")
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Connections/requests in flight beyond this get 503.")
    ] = 1024,
    grpc_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Also serve the protocol over gRPC on this port."),
    ] = None,
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
    verify_key: Annotated[
        Path | None,
        typer.Option(
            help="Ed25519 public key (PEM): serve only model files with a valid signature "
            "by it (model.onnx.sig beside each)."
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="This party's certificate (PEM): mutual TLS on.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="The CA certificate it trusts (PEM).")] = None,
    tls_crl: Annotated[
        Path | None, typer.Option(help="The CA's revocation list (PEM; servers reload it).")
    ] = None,
) -> None:
    """Serve a model repository over the Open Inference Protocol v2 (KServe/Triton HTTP)."""

    from edgeintel.runtime.auth import load_tokens
    from edgeintel.runtime.nodes import node_setup, trace_clock, upstream_transport
    from edgeintel.runtime.server import serve
    from edgeintel.runtime.settings import BatchingSettings, ServerSettings, check_bindable
    from edgeintel.runtime.transport import Transport

    with guard():
        try:  # before anything loads or says it is ready
            check_bindable(host, port)
        except ValueError as exc:
            raise ConfigError(f"--host {host!r} --port {port}: {exc}") from None
        if trace_origin is not None and not math.isfinite(trace_origin):
            raise ConfigError(
                f"--trace-origin: expected a finite Unix time (s), got {trace_origin}"
            )
        batching = BatchingSettings(
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            queue_capacity=queue_capacity,
            adaptive_wait=adaptive_wait,
        )
        settings = ServerSettings(
            intra_op_threads=threads,
            max_request_bytes=max_request_bytes,
            body_timeout_s=body_timeout_s,
            max_connections=max_connections,
            batching=batching,
        )
        if scenario is not None and node_config is not None:
            raise ConfigError("give --scenario or --node-config, not both")
        rcs, hops = node_setup(scenario, node_config, node, upstream is not None)
        cache = features = None
        if rcs is not None:
            from edgeintel.runtime.repository import model_task
            from edgeintel.runtime.wiring import input_features, server_cache

            def cache(model: str, version: str) -> Any:
                # the model's task kind (from its manifest) decides what reuse may answer
                task = model_task(repository, model)
                return server_cache(rcs, node or "node", task=task)

            features = input_features
        table = load_tokens(tokens)
        tls = _tls_files(tls_cert, tls_key, tls_ca, tls_crl)
        verify = None
        if verify_key is not None:
            from edgeintel.security.signing import ArtifactVerifier

            verify = ArtifactVerifier(verify_key)
        up: Transport | None = None
        up_name = up_token = None
        if upstream is not None:
            up_name = hops[1]
            clock = trace_clock(trace_origin, trace_origin_file)
            up = upstream_transport(upstream, hops[0], emulate_link, clock, trace_time_scale, tls)
            if table is not None and node is not None:
                up_token = table.nodes.get(node)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per relayed request
        serve(
            repository,
            host,
            port,
            settings,
            tls=tls,
            verify=verify,
            tokens=table,
            sink_path=sink,
            cache=cache,
            features=features,
            node=node,
            upstream=up,
            upstream_name=up_name,
            upstream_token=up_token,
            grpc_port=grpc_port,
        )


def export_repo_cmd(
    artifacts: Annotated[
        list[Path], typer.Argument(help="Artifact records (<model>.json next to each .onnx).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Repository folder to write.")],
    name: Annotated[
        str | None, typer.Option(help="Model name, a plain name (default: file stem).")
    ] = None,
    max_batch_size: Annotated[int, typer.Option(min=0)] = 32,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Write into a folder holding an earlier repository."),
    ] = False,
    signing_key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 private key (PEM): sign every model file (.sig beside it)."),
    ] = None,
) -> None:
    """Write ONNX artifacts as a Triton/KServe model repository (versions 1..n under one
    ``--name``, or one model per artifact). Records are checked (their model paths resolve
    against their own folder) and nothing is written unless every artifact can be.
    Signatures beside the artifacts are kept; ``--signing-key`` signs every file anew."""
    from edgeintel.records import load_artifact
    from edgeintel.runtime.repository import export_repository
    from edgeintel.security.signing import load_signing_key

    with guard():
        signer = None if signing_key is None else load_signing_key(signing_key)
        arts = [load_artifact(a) for a in artifacts]
        mapping = {name: arts} if name is not None else {Path(a.path).stem: a for a in arts}
        root = export_repository(mapping, out, max_batch_size, overwrite, signer)  # type: ignore[arg-type]
        console.print(f"[green]wrote[/] {root}: {json.dumps(sorted(mapping))}", highlight=False)


def _runtime_predictor(artifact: Path, dev: Any, sample: Any, verify_key: Path | None) -> Any:
    """The device profile's runtime loading ``artifact`` (each of its files signature-checked
    with ``verify_key``), tried on one input; one line when it does not fit."""
    from edgeintel.inference.runtimes.base import get_runtime

    rt = get_runtime(dev.profile.runtime)
    if artifact.suffix != rt.suffix:
        raise ConfigError(
            f"--runtime-artifact {artifact}: device {dev.name}'s profile runs {rt.name}, "
            f"which loads {rt.suffix} files"
        )
    if verify_key is not None:
        from edgeintel.security.signing import ArtifactVerifier

        verifier = ArtifactVerifier(verify_key)
        for f in rt.files(artifact):
            verifier(f)
    predictor = rt.load(artifact)
    try:
        predictor.run(sample.astype("float32"))
    except Exception as exc:
        raise ConfigError(
            f"--runtime-artifact {artifact}: does not run on device {dev.name}'s inputs "
            f"({exc.__class__.__name__})"
        ) from None
    return predictor


def device_cmd(
    scenario: Annotated[
        Path, typer.Argument(help="Scenario YAML file or a shipped scenario's name.")
    ],
    device: Annotated[str, typer.Option(help="Device name, e.g. phone-0 (<group>-<i>).")],
    onnx: Annotated[Path, typer.Option(help="The device's local (compressed) ONNX model.")],
    store: Annotated[Path, typer.Option(help="SQLite store-and-forward file of this device.")],
    server: Annotated[
        str | None, typer.Option(help="host:port of the device's edge server (none: offline).")
    ] = None,
    model: Annotated[str, typer.Option(help="Model name on the server.")] = "model",
    tier: Annotated[
        str, typer.Option(help="Placement: device, edge, cloud, or d2d (with --d2d).")
    ] = "device",
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
    verify_key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 public key (PEM): load --onnx only with a valid signature."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="This party's certificate (PEM): mutual TLS on.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="The CA certificate it trusts (PEM).")] = None,
    tls_crl: Annotated[
        Path | None, typer.Option(help="The CA's revocation list (PEM; servers reload it).")
    ] = None,
    store_key: Annotated[
        Path | None,
        typer.Option(
            help="The run's 32-byte store secret (runtime/keys/store.key): with the "
            "scenario's settings.runtime.store.encrypt, this device's results are sealed "
            "in --store with its own key derived from it."
        ),
    ] = None,
    version: Annotated[
        str, typer.Option(help="The version of --onnx (its repository folder).")
    ] = "1",
    follow_rollouts: Annotated[
        bool,
        typer.Option(
            help="Run the version the server assigns (edgeintel rollout): fetched, checked "
            "against --verify-key (else its sha256), swapped in between two inputs."
        ),
    ] = False,
    models_dir: Annotated[
        Path | None,
        typer.Option(help="Where fetched versions are kept (default: beside --store)."),
    ] = None,
    drift_reference: Annotated[
        int,
        typer.Option(
            min=0,
            help="Watch for drift (no labels): the first N inputs of the stream are the "
            "reference; alarms go to the server with the results. 0: off.",
        ),
    ] = 0,
    drift_false_alarms_per_hour: Annotated[
        float, typer.Option(help="False alarms per device-hour the drift monitor may raise.")
    ] = 1.0,
    runtime_artifact: Annotated[
        Path | None,
        typer.Option(
            help="The same model in the device profile's runtime (e.g. a compress stage's "
            "<profile>.xml or .pte, or `edgeintel export`): local inference runs it there; "
            "--onnx still serves split heads and the filter."
        ),
    ] = None,
    d2d: Annotated[
        str | None,
        typer.Option(
            help="NAME=HOST:PORT of a neighbour device (its --serve-d2d) that runs this "
            "device's inputs with --tier d2d; with --emulate-link over the scenario's "
            "settings.offloading.d2d link."
        ),
    ] = None,
    serve_d2d: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT where this device answers its neighbours' D2D requests on its "
            "own model (mutual TLS with --tls-*: their device certificates)."
        ),
    ] = None,
) -> None:
    """Run a device agent: replay its data, infer locally or offload, store and forward."""
    from dataclasses import replace

    from edgeintel.examples import resolve_scenario
    from edgeintel.onnx_files import check_input_shape, make_session
    from edgeintel.runtime.agent import DeviceAgent, check_model_preprocessing, device_stream
    from edgeintel.runtime.store import DeviceStore
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, Transport
    from edgeintel.runtime.wiring import filter_for_device, task_for_model, threshold_from_results

    with guard():
        _check_device_options(rate_hz, duration_s, drain_timeout_s, store)
        sc = load(resolve_scenario(scenario), None)  # a shipped scenario's bare name too
        key = _store_key(store_key, sc.settings.runtime.store.encrypt, device)
        stream = device_stream(sc, device)  # names the scenario's devices if unknown
        dev = next(d for d in sc.expand_devices() if d.name == device)
        tls = _tls_files(tls_cert, tls_key, tls_ca, tls_crl)
        plan, peers = _device_plan(tier, d2d, dev, sc, tls, emulate_link)
        if rate_hz is not None:
            stream = replace(stream, interval_s=1.0 / rate_hz)
        transport: Transport | None = None
        if server is not None:
            transport = HttpTransport(server, tls=tls)
            if emulate_link:
                transport = LinkEmulator(transport, dev.link, seed=sc.seed)
        settings = sc.settings.runtime
        check_model_preprocessing(onnx, stream)
        from edgeintel.security.signing import ArtifactVerifier

        if verify_key is not None:
            ArtifactVerifier(verify_key)(onnx)
        session = make_session(onnx)
        check_input_shape(session, tuple(stream.inputs[0].shape), onnx)
        predictor = None
        if runtime_artifact is not None:
            predictor = _runtime_predictor(runtime_artifact, dev, stream.inputs[:1], verify_key)
        # the task kind with what its run fitted for this model (anomaly threshold, tolerance)
        kind = task_for_model(onnx, sc.task.task_kind())
        filt = None
        if filter_from is not None or filter_:
            tuned = None if filter_from is None else threshold_from_results(filter_from, device)
            filt, _ = filter_for_device(
                sc.settings.caching.filter, stream.inputs, session, tuned, kind
            )
        updater = None
        if follow_rollouts:
            if server is None:
                raise ConfigError("--follow-rollouts: needs --server (versions come from it)")
            if not version.isdigit():
                raise ConfigError(f"--version: expected a version number, got {version!r}")
            from edgeintel.runtime.updater import ModelUpdater

            shape = tuple(stream.inputs[0].shape)
            updater = ModelUpdater(
                model,
                models_dir or store.with_name(store.name + ".models"),
                transport,
                {"Authorization": f"Bearer {token}"} if token else {},
                verify=None if verify_key is None else ArtifactVerifier(verify_key),
                check=lambda s: check_input_shape(s, shape, f"{model} (fetched)"),
            )
        watch = None
        if drift_reference:
            from edgeintel.monitoring import DriftConfig
            from edgeintel.onnx_files import onnx_predict
            from edgeintel.runtime.drift_watch import DriftWatch

            if drift_reference > len(stream.inputs):
                raise ConfigError(
                    f"--drift-reference: {drift_reference} inputs asked, the stream holds "
                    f"{len(stream.inputs)}"
                )
            cfg = DriftConfig(
                input_hz=1.0 / max(stream.interval_s, 1e-3),
                false_alarms_per_hour=drift_false_alarms_per_hour,
            )
            ref = stream.inputs[:drift_reference]
            watch = DriftWatch(cfg, ref, lambda xs: onnx_predict(session, xs))
        with DeviceStore(store, settings.store, key=key) as st:
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
                server_node=dev.attach,
                task=kind,
                version=version,
                updater=updater,
                drift=watch,
                predictor=predictor,
                peers=peers,
            )
            helper = None if serve_d2d is None else _peer_service(agent, serve_d2d, tls)
            try:
                stats = agent.run(limit, duration_s, drain_timeout_s)
            finally:
                if helper is not None:
                    helper.stop()
                for t in [transport, *peers.values()]:
                    if t is not None:
                        t.close()
            out = {
                "device": device,
                "inputs": len(stream.inputs),
                "inputs_sha256": stream.digest(),  # to check it streams the run's inputs
                **stats.to_json(),
                "store": dict(st.counters),
                "undelivered": st.size,
                "version": agent.active.version,
                "drift": None if watch is None else watch.report(),
                "d2d_served": None if helper is None else helper.served,
                "swaps": [
                    {"t_s": round(t - (agent.started or t), 3), "version": v}
                    for t, v in agent.versions
                ],
            }
            hint = agent.delivery_hint(st.size)
            if hint is not None:
                out["hint"] = hint
        console.print_json(json.dumps(out))


def _device_plan(
    tier: str, d2d: str | None, dev: Any, sc: Any, tls: Any, emulate_link: bool
) -> tuple[Any, dict[str, Any]]:
    """``device``'s static plan and its D2D peers (``--tier``, ``--d2d``)."""
    from edgeintel.runtime.seams import ExecutionTier, StaticPlan
    from edgeintel.runtime.settings import parse_address
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, Transport

    if tier != "d2d":
        if d2d is not None:
            raise ConfigError("--d2d: names the helper of --tier d2d; give --tier d2d")
        try:  # cloud: the edge server relays it (forward header), as in a deployed run
            return StaticPlan.for_tier(tier, dev.attach, sc.cloud.name), {}
        except ValueError:
            raise ConfigError(
                f"--tier: expected device, edge, cloud or d2d, got {tier!r}"
            ) from None
    name, _, where = (d2d or "").partition("=")
    if not name or not where:
        raise ConfigError(f"--d2d: expected NAME=HOST:PORT of the helper device, got {d2d!r}")
    try:
        host, port = parse_address(where)
    except ValueError as exc:
        raise ConfigError(f"--d2d: {exc}") from None
    peer: Transport = HttpTransport(f"{host}:{port}", tls=tls)
    link = sc.settings.offloading.d2d
    if emulate_link and link is not None:
        from edgeintel.topology import LinkSpec

        peer = LinkEmulator(peer, LinkSpec(bandwidth_mbps=link.bandwidth_mbps,
                                           rtt_ms=link.rtt_ms), seed=sc.seed)  # fmt: skip
    return StaticPlan(ExecutionTier.D2D, target=name), {name: peer}


def _peer_service(agent: Any, address: str, tls: Any) -> Any:
    """The agent's D2D endpoint at ``address`` (--serve-d2d), started: under mutual TLS
    neighbours are the devices whose certificates the CA signed."""
    from edgeintel.runtime.auth import Unauthorized
    from edgeintel.runtime.peer import PeerService
    from edgeintel.runtime.settings import check_bindable, parse_address

    try:
        host, port = parse_address(address)
        check_bindable(host, port)
    except ValueError as exc:
        raise ConfigError(f"--serve-d2d: {exc}") from None

    def authorize(token: str, peer: Any) -> str | None:
        if tls is not None and (peer is None or str(peer.role) != "device"):
            raise Unauthorized("D2D requests come from devices (a device certificate)")
        return None if peer is None else str(peer.name)

    return PeerService(agent, host, port, tls=tls, authorize=authorize).start()


def _tls_files(cert: Path | None, key: Path | None, ca: Path | None, crl: Path | None) -> Any:
    """The ``TlsFiles`` of --tls-cert/--tls-key/--tls-ca[/--tls-crl], checked (one line
    naming the option and file when one is missing or malformed); None without them."""
    given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
    if all(v is None for v in given.values()):
        if crl is not None:
            raise ConfigError("--tls-crl: needs --tls-cert, --tls-key and --tls-ca")
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: mutual TLS needs all of {', '.join(given)}")
    from edgeintel.security.pki import TlsFiles

    assert cert is not None and key is not None and ca is not None
    return TlsFiles(cert, key, ca, crl).check()


def _store_key(path: Path | None, encrypt: bool, device: str) -> bytes | None:
    """``device``'s store key from the run's secret at ``path`` (--store-key), required
    exactly when the scenario's store is encrypted (one line naming the option)."""
    if not encrypt:
        if path is not None:
            raise ConfigError(
                "--store-key: the scenario's settings.runtime.store.encrypt is false; "
                "set it to true or leave --store-key out"
            )
        return None
    if path is None:
        raise ConfigError(
            "--store-key: the scenario's settings.runtime.store.encrypt is true; give the "
            "run's store secret (runtime/keys/store.key)"
        )
    from edgeintel.security.store_crypto import device_key, load_store_secret

    return device_key(load_store_secret(path), device)


def _check_device_options(
    rate_hz: float | None, duration_s: float | None, drain_timeout_s: float, store: Path
) -> None:
    """``device``'s numbers finite and positive, ``--store`` a file path, before any work."""
    for option, value in (("--rate-hz", rate_hz), ("--duration-s", duration_s)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{option}: expected a finite number > 0, got {value}")
    if not (math.isfinite(drain_timeout_s) and 0 <= drain_timeout_s <= 3600):
        raise ConfigError(
            f"--drain-timeout-s: expected seconds in [0, 3600], got {drain_timeout_s}"
        )
    if store.is_dir():
        raise ConfigError(f"--store {store}: is a folder; expected a SQLite file path")
    check_out_dir(store.parent, "--store")  # created when missing; never a file
