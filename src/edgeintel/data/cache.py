"""The on-disk cache of generated data: what is costly to make and the same every time.

A dataset that is generated rather than read (``voice_commands``: espeak-ng synthesis,
about 0.1 s a call) is made once and kept as an ``.npz`` under ``data_cache_dir()``, in a
file named by a digest of every setting that shaped it (``settings_key``), so a change of
setting (or of the synthesiser's version) makes a new file and never reads a stale one.
Files are written to a temporary name and renamed (readers never see half a file), and
``cached_arrays`` holds a lock while it builds, so concurrent processes (device agents
starting together) build once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import DataError

__all__ = ["CACHE_ENV", "cached_arrays", "data_cache_dir", "settings_key"]

CACHE_ENV = "EDGEINTEL_DATA_CACHE"
"""Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/edgeintel/data``,
``~/.cache/edgeintel/data`` without it)."""


def data_cache_dir() -> Path:
    """The folder generated data is kept in (``EDGEINTEL_DATA_CACHE`` or the XDG cache)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edgeintel" / "data"


def settings_key(settings: dict[str, Any]) -> str:
    """A 16-hex-digit digest of JSON-able ``settings`` (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_arrays(
    name: str,
    settings: dict[str, Any],
    build: Callable[[], dict[str, np.ndarray]],
    folder: Path | None = None,
) -> dict[str, np.ndarray]:
    """The arrays ``build()`` makes for ``settings``, read from the cache when present.

    The file is ``<folder>/<name>-<settings_key>.npz`` (``folder`` defaults to
    ``data_cache_dir()``); the settings are stored beside the arrays (``settings.json``
    member) and checked on reading, so a digest collision cannot hand back other data.
    """
    root = data_cache_dir() if folder is None else folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{root}: cannot create the data cache folder ({exc.strerror})") from None
    key = settings_key(settings)
    path = root / f"{name}-{key}.npz"
    stamp = json.dumps(settings, sort_keys=True, default=str)
    found = _read(path, stamp)
    if found is not None:
        return found
    with (root / f".{name}-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same file
        found = _read(path, stamp)
        if found is not None:
            return found
        arrays = build()
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, settings_json=np.array(stamp), **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    return arrays


def _read(path: Path, stamp: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` if it exists, is readable and was built from ``stamp``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["settings_json"]) != stamp:
                return None
            return {k: npz[k] for k in npz.files if k != "settings_json"}
    except (OSError, ValueError, KeyError):  # a damaged file is rebuilt
        return None
