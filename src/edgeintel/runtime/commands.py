"""CLI commands of the runtime (registered on the main ``edgeintel`` app by cli.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
import yaml

from edgeintel.errors import ConfigError

__all__ = ["export_repo_cmd", "load_tokens", "serve_cmd"]


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
