"""Atomic per-round checkpoints of the aggregator's state, validated on load.

A checkpoint holds named numpy arrays (model, server-optimizer moments, error-feedback
residuals, ...) plus a JSON ``meta`` mapping (round, RNG states, accountant history,
...) and the hash of the scenario it belongs to. The file is::

    b"EDGEINTEL-CKPT\\n" | 8-byte big-endian header length | header JSON | payload (.npz)

where the header records the format version, round, scenario hash, meta and the
SHA-256 of the payload. Saving writes a temporary file in the same folder, fsyncs
it, ``os.replace``s it over the target and fsyncs the folder, so a crash leaves
either the old or the new checkpoint, never a torn one. Loading checks the magic,
version, payload hash and scenario hash and raises a ``DataError`` naming the file
otherwise: a damaged or foreign checkpoint never silently restarts training.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, DataError

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "load_checkpoint",
    "save_checkpoint",
    "scenario_hash",
]

MAGIC = b"EDGEINTEL-CKPT\n"
VERSION = 1
_LEN = struct.Struct(">Q")


@dataclass(frozen=True)
class Checkpoint:
    """State after ``round`` completed rounds; ``meta`` must be JSON-serialisable."""

    round: int
    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any] = field(default_factory=dict)
    scenario_hash: str = ""


def scenario_hash(obj: Any) -> str:
    """SHA-256 (hex) of a canonical JSON form of a pydantic model or JSON-able mapping."""
    data = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file + fsync + os.replace)."""
    path = Path(path)
    if ckpt.round < 0:
        raise ConfigError(f"checkpoint round must be >= 0, got {ckpt.round}")
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{k: np.asarray(v) for k, v in ckpt.arrays.items()})
    payload = buf.getvalue()
    header = {
        "version": VERSION,
        "round": ckpt.round,
        "scenario_hash": ckpt.scenario_hash,
        "meta": ckpt.meta,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
    }
    try:
        head = json.dumps(header, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"checkpoint meta is not JSON-serialisable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + _LEN.pack(len(head)) + head + payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path, expected_scenario_hash: str | None = None) -> Checkpoint:
    """Read and validate a checkpoint; any damage or mismatch raises a ``DataError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if not raw.startswith(MAGIC):
        raise DataError(f"checkpoint {path} is not an edgeintel checkpoint (bad magic bytes)")
    off = len(MAGIC)
    if len(raw) < off + _LEN.size:
        raise DataError(f"checkpoint {path} is truncated")
    (hlen,) = _LEN.unpack_from(raw, off)
    off += _LEN.size
    try:
        header = json.loads(raw[off : off + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"checkpoint {path} has a corrupt header") from None
    payload = raw[off + hlen :]
    if not isinstance(header, dict):
        raise DataError(f"checkpoint {path} has a corrupt header")
    if header.get("version") != VERSION:
        raise DataError(
            f"checkpoint {path} has format version {header.get('version')}; expected {VERSION}"
        )
    if len(payload) != header.get("payload_bytes"):
        raise DataError(
            f"checkpoint {path} is truncated ({len(payload)} of {header.get('payload_bytes')} "
            "payload bytes)"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise DataError(f"checkpoint {path} is corrupt (payload checksum mismatch)")
    got = header.get("scenario_hash", "")
    if expected_scenario_hash is not None and got != expected_scenario_hash:
        raise DataError(
            f"checkpoint {path} belongs to another scenario or settings "
            f"(hash {got[:12]} != {expected_scenario_hash[:12]}); "
            "remove it or point checkpoint_dir elsewhere"
        )
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Checkpoint(
        round=int(header["round"]), arrays=arrays, meta=header["meta"], scenario_hash=got
    )


_NAME = re.compile(r"round-(\d{6})\.ckpt$")


class CheckpointStore:
    """A folder of ``round-NNNNNN.ckpt`` files; keeps the newest ``keep`` of them."""

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ConfigError(f"checkpoint keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name)

    def save(self, ckpt: Checkpoint) -> Path:
        path = save_checkpoint(self.directory / f"round-{ckpt.round:06d}.ckpt", ckpt)
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest_path(self) -> Path | None:
        paths = self.paths()
        return paths[-1] if paths else None

    def load_latest(self, expected_scenario_hash: str | None = None) -> Checkpoint | None:
        """The newest checkpoint, or None when the folder has none; a bad one raises."""
        path = self.latest_path()
        return None if path is None else load_checkpoint(path, expected_scenario_hash)
