"""Bearer tokens of a deployment: devices, relaying nodes and operators.

A tokens file is a JSON/YAML mapping, either flat (``device name -> token``) or
sectioned::

    devices:   {phone-0: "...", phone-1: "..."}   # infer, metadata, their own results
    nodes:     {micro-1: "..."}                    # an edge server relaying results upstream
    operators: {admin: "..."}                      # /metrics, /v2/stats, /dashboard

Tokens have at least 16 characters; comparisons are constant-time. With no
tokens configured a node is open (a lab setting); with tokens, every endpoint but
the health probes needs one of the right kind (401 otherwise).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from edgeintel.errors import ConfigError, EdgeIntelError

__all__ = ["Authenticator", "Principal", "Role", "Tokens", "Unauthorized", "bearer", "load_tokens"]


class Role(StrEnum):
    DEVICE = "device"
    NODE = "node"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    """Who presented a token: a device, a relaying node or an operator, by name."""

    role: Role
    name: str


_SECTIONS = {"devices": Role.DEVICE, "nodes": Role.NODE, "operators": Role.OPERATOR}


@dataclass(frozen=True)
class Tokens:
    """Name -> token per role."""

    devices: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    operators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for section in _SECTIONS:
            for name, token in getattr(self, section).items():
                if not isinstance(name, str) or not isinstance(token, str) or len(token) < 16:
                    raise ConfigError(
                        f"tokens: {section}.{name}: expected a token of >= 16 characters"
                    )

    @property
    def enabled(self) -> bool:
        return bool(self.devices or self.nodes or self.operators)

    def principal(self, token: str) -> Principal | None:
        """The holder of ``token`` (every entry is compared, in constant time each)."""
        found = None
        given = token.encode()
        for section, role in _SECTIONS.items():
            for name, known in getattr(self, section).items():
                if hmac.compare_digest(known.encode(), given):
                    found = found or Principal(role, name)
        return found

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"devices": self.devices, "nodes": self.nodes, "operators": self.operators}

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "tokens") -> Tokens:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping of name -> token")
        if raw and set(raw) <= set(_SECTIONS) and all(isinstance(v, dict) for v in raw.values()):
            return cls(**{k: dict(v) for k, v in raw.items()})
        return cls(devices=dict(raw))


def load_tokens(path: str | Path | None) -> Tokens | None:
    """Tokens from a JSON or YAML file (flat or sectioned); None when no path is given."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"tokens file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"{p}: not a JSON/YAML mapping of name -> token") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{p}: expected a mapping of device name -> token (tokens of >= 16 characters)"
        )
    try:
        return Tokens.from_mapping(raw, str(p))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


class Unauthorized(EdgeIntelError):
    """A request without a valid token of the required kind (answered 401 / UNAUTHENTICATED)."""


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value ("" when there is none)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Authenticator:
    """Who may call what, from a ``Tokens`` table; transport-neutral (HTTP and gRPC give
    the token they read). With an empty table every check passes (a lab setting)."""

    def __init__(self, tokens: Tokens, on_device: Any = None) -> None:
        self.tokens = tokens
        self._on_device = on_device  # called with a device's name on each device request

    @property
    def enabled(self) -> bool:
        return self.tokens.enabled

    def principal(self, token: str) -> Principal | None:
        return self.tokens.principal(token) if token else None

    def device(self, token: str, peer: Any = None) -> str | None:
        """The calling device's name (None when auth is off, or for a relaying node);
        ``Unauthorized`` without a valid device or node token. ``peer``: the client
        certificate's identity under mutual TLS (``security.pki.Identity``): a device
        certificate names the device, and a device token of another name is refused."""
        name = self._token_device(token)
        if peer is not None and str(peer.role) == Role.DEVICE.value:
            if name is not None and name != peer.name:
                raise Unauthorized(f"token of {name!r} with the certificate of {peer.name!r}")
            return str(peer.name)
        return name

    def _token_device(self, token: str) -> str | None:
        if not self.enabled:
            return None
        who = self.principal(token)
        if who is None or who.role is Role.OPERATOR:
            raise Unauthorized("missing or invalid bearer token")
        if who.role is Role.NODE:
            return None
        if self._on_device is not None:
            self._on_device(who.name)
        return who.name

    def anyone(self, token: str) -> None:
        """Any known principal (device, node or operator): server metadata, the index."""
        if self.enabled and self.principal(token) is None:
            raise Unauthorized("missing or invalid bearer token")

    def operator(self, token: str) -> None:
        """``Unauthorized`` unless an operator's token is presented (when auth is on)."""
        if not self.enabled:
            return
        who = self.principal(token)
        if who is None or who.role is not Role.OPERATOR:
            raise Unauthorized("missing or invalid operator token")
