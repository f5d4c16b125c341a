"""The running system: edge/cloud inference servers (Open Inference Protocol v2), dynamic
batching, a sha256-verified model repository, device agents with store-and-forward, and
link emulation over a swappable transport. See docs/runtime.md.

A lazy face (``edgeintel.lazy``): each name loads its module on first use, so that
``edgeintel.scenario`` can import ``edgeintel.runtime.settings`` without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.runtime.agent import DeviceAgent
    from edgeintel.runtime.auth import Tokens
    from edgeintel.runtime.batching import DynamicBatcher
    from edgeintel.runtime.repository import ModelRepository, export_repository
    from edgeintel.runtime.seams import ExecutionTier
    from edgeintel.runtime.server import InferenceServer, build_app, serve
    from edgeintel.runtime.settings import (
        BatchingSettings,
        DeployPlacement,
        DeploySettings,
        OnFull,
        RuntimeSettings,
        ServerSettings,
        StoreSettings,
    )
    from edgeintel.runtime.sink import ResultSink
    from edgeintel.runtime.store import DeviceStore
    from edgeintel.runtime.transport import (
        HttpTransport,
        LinkEmulator,
        MemoryTransport,
        PathLink,
        Transport,
    )
    from edgeintel.runtime.wiring import AdaptivePlan, server_cache

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

__getattr__, __dir__ = lazy_face(__name__, __file__)
