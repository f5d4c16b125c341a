"""A device agent's D2D endpoint: a neighbour's work executed by this device's own model.

When the offloading plan sends a device's input to a neighbouring device (D2D), the
neighbour's agent answers it: ``PeerService`` listens on a real socket (mutual TLS with
the helper device's certificate, or plaintext), takes the Open Inference Protocol v2
infer request the requester's agent sends (``DeviceAgent._offload`` over its ``peers``),
runs it on the helper agent's active model version (``DeviceAgent.serve_peer``) and
answers with that version's output, tagged with the version. The helper stores
nothing: the requester keeps the result in its own store and delivers it once, under
its own idempotency key, when its link to its server is up.

The stdlib ``ThreadingHTTPServer`` is enough for one device's neighbours (a handful of
connections); each connection's TLS handshake runs in its own thread.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edgeintel.runtime.auth import Unauthorized, bearer
from edgeintel.runtime.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_request,
    encode_response,
)

__all__ = ["PeerService"]

_INFER = re.compile(r"^/v2/models/(?P<model>[A-Za-z0-9_.-]+)(/versions/[0-9]+)?/infer$")
MAX_BODY = 64 << 20  # bytes of one D2D request (a frame or a window, with room)

# who may ask: (bearer token, client certificate identity or None) -> requester's name
Authorize = Callable[[str, Any], "str | None"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None
    revocations: Any = None

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:  # the handshake waits for the handler's thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake (no or revoked certificate) or a vanished neighbour: the
        connection is dropped, nothing else happens (``refused`` counts requests only)."""


class PeerService:
    """The D2D endpoint of ``agent`` (a ``DeviceAgent``) at ``host:port`` (0: a free port).

    ``tls``: the helper device's ``security.pki.TlsFiles`` (its certificate serves, a
    client certificate by the same CA is required and revoked ones are refused);
    ``authorize(token, identity)`` returns the requester's name or raises
    ``Unauthorized`` (None: anyone on the link). ``served`` counts the requests
    answered per requester, ``refused`` those turned away (401, 404, 400)."""

    def __init__(
        self,
        agent: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: Any = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.agent = agent
        self.authorize = authorize
        self.served: dict[str, int] = {}
        self.refused = 0
        self._lock = threading.Lock()
        self._server = _Server((host, port), self._handler())
        if tls is not None:
            from edgeintel.security.pki import Revocations

            self._server.tls = tls.server_context()
            if tls.crl is not None and tls.crl.is_file():
                self._server.revocations = Revocations(tls.crl, tls.ca)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` where neighbours reach this device."""
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"{host}:{port}"

    def start(self) -> PeerService:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"d2d-{self.agent.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (requests in flight finish; idle connections time out)."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PeerService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count(self, who: str | None) -> None:
        with self._lock:
            key = who or "?"
            self.served[key] = self.served.get(key, 0) + 1

    def _refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def answer(
        self, path: str, body: bytes, headers: dict[str, str], peer: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) of one request: the helper's model output for an infer
        request on the agent's model, a one-line JSON error otherwise."""
        m = _INFER.match(path)
        if m is None or m["model"] != self.agent.model:
            self._refuse()
            return _error(404, f"this device serves /v2/models/{self.agent.model}/infer")
        try:
            who = (
                self.authorize(bearer(headers.get("authorization")), peer)
                if self.authorize
                else None
            )
        except Unauthorized as exc:
            self._refuse()
            return _error(401, str(exc))
        try:
            n = headers.get(HEADER_LENGTH.lower())
            req = decode_request(body, int(n) if n else None)
            x = np.ascontiguousarray(req.inputs[0].data, dtype=np.float32)
            out, version = self.agent.serve_peer(x)
        except (ProtocolError, ValueError) as exc:
            self._refuse()
            return _error(400, str(exc)[:300])
        name = str(self.agent.session.get_outputs()[0].name)
        resp, hl = encode_response(self.agent.model, version, {name: out}, {name})
        self._count(who if who is not None else getattr(peer, "name", None))
        extra = {HEADER_LENGTH: str(hl)} if hl is not None else {}
        return 200, resp, {"Content-Type": "application/octet-stream", **extra}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the requester's client pools
            timeout = 30  # s an idle connection is kept

            def setup(self) -> None:
                sock = self.request
                self.peer_identity: Any = None
                if isinstance(sock, ssl.SSLSocket):
                    sock.settimeout(10)
                    sock.do_handshake()
                    der = sock.getpeercert(binary_form=True)
                    from edgeintel.security.pki import identity_of

                    ident = identity_of(der) if der else None
                    revoked = service._server.revocations
                    if ident is None or (revoked is not None and revoked.revoked(ident.serial)):
                        sock.close()
                        raise ConnectionAbortedError("no or revoked client certificate")
                    self.peer_identity = ident
                super().setup()

            def handle(self) -> None:
                with contextlib.suppress(OSError):  # a neighbour that went away (SSLError too)
                    super().handle()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(*_error(413, f"body over {MAX_BODY} bytes"))
                    self.close_connection = True
                    return
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._send(*service.answer(self.path, body, headers, self.peer_identity))

            def do_GET(self) -> None:
                self._send(*_error(404, "POST /v2/models/<model>/infer"))

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # counted in ``served`` / ``refused``, not printed

        return Handler


def _error(status: int, message: str) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": message}).encode(), {"Content-Type": "application/json"}
