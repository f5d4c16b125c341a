"""CLI commands of the runtime (registered on the main ``edgeintel`` app by cli.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
import yaml

from edgeintel.errors import ConfigError

__all__ = ["device_cmd", "export_repo_cmd", "load_tokens", "serve_cmd"]


def load_tokens(path: Path | None) -> dict[str, str] | None:
    """``device -> token`` from a JSON or YAML mapping file (None when not given)."""
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"tokens file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not a JSON/YAML mapping of device name -> token") from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) >= 16 for k, v in raw.items()
    ):
        raise ConfigError(
            f"{path}: expected a mapping of device name -> token (tokens of >= 16 characters)"
        )
    return dict(raw)


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
) -> None:
    """Serve a model repository over the Open Inference Protocol v2 (KServe/Triton HTTP)."""
    from edgeintel.cli import guard
    from edgeintel.runtime.server import serve
    from edgeintel.runtime.settings import BatchingSettings, ServerSettings

    with guard():
        settings = ServerSettings(
            intra_op_threads=threads,
            max_request_bytes=max_request_bytes,
            batching=BatchingSettings(
                max_batch_size=max_batch_size,
                max_queue_delay_us=max_queue_delay_us,
                queue_capacity=queue_capacity,
            ),
        )
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        serve(repository, host, port, settings, load_tokens(tokens), sink)


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
) -> None:
    """Run a device agent: replay its data, infer locally or offload, store and forward."""
    from dataclasses import replace

    from edgeintel.cli import _load, console, guard
    from edgeintel.models.export import make_session
    from edgeintel.runtime.agent import DeviceAgent, device_stream
    from edgeintel.runtime.seams import StaticPlan, Tier
    from edgeintel.runtime.store import DeviceStore
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, Transport

    with guard():
        sc = _load(scenario, None)
        try:
            plan = StaticPlan(tier=Tier(tier))
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
        with DeviceStore(store, settings.store) as st:
            agent = DeviceAgent(
                device,
                stream,
                make_session(onnx),
                st,
                transport,
                model=model,
                plan=plan,
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
                **stats.to_json(),
                "store": dict(st.counters),
                "undelivered": st.size,
            }
        console.print_json(json.dumps(out))
