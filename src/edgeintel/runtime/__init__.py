"""The running system: edge/cloud inference servers (Open Inference Protocol v2), dynamic
batching, a sha256-verified model repository, device agents with store-and-forward, and
link emulation over a swappable transport. See docs/runtime.md.

Submodules import lazily: ``edgeintel.scenario`` imports ``runtime.settings`` and must not
pull in the server.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeintel.runtime.settings import (
    BatchingSettings,
    DeployPlacement,
    DeploySettings,
    OnFull,
    RuntimeSettings,
    ServerSettings,
    StoreSettings,
)

__all__ = [
    "AdaptivePlan",
    "BatchingSettings",
    "DeployPlacement",
    "DeploySettings",
    "DeviceAgent",
    "DeviceStore",
    "DynamicBatcher",
    "ExecutionTier",
    "HttpTransport",
    "InferenceServer",
    "LinkEmulator",
    "MemoryTransport",
    "ModelRepository",
    "OnFull",
    "PathLink",
    "ResultSink",
    "RuntimeSettings",
    "ServerSettings",
    "StoreSettings",
    "Tokens",
    "Transport",
    "build_app",
    "export_repository",
    "serve",
    "server_cache",
]

_LAZY = {
    "AdaptivePlan": "wiring",
    "DeviceAgent": "agent",
    "ExecutionTier": "seams",
    "PathLink": "transport",
    "Tokens": "auth",
    "server_cache": "wiring",
    "DeviceStore": "store",
    "DynamicBatcher": "batching",
    "HttpTransport": "transport",
    "InferenceServer": "server",
    "LinkEmulator": "transport",
    "MemoryTransport": "transport",
    "ModelRepository": "repository",
    "ResultSink": "sink",
    "Transport": "transport",
    "build_app": "server",
    "export_repository": "repository",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgeintel.runtime.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgeintel.runtime' has no attribute {name!r}")
