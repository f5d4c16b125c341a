"""Mutual TLS with device identities, on a real server process on loopback: a client
without a certificate, with one from another CA, an expired or a revoked one is
refused; a device cannot submit another device's results; bad TLS files are one line."""

from __future__ import annotations

import datetime as dt
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.runtime.transport import HttpTransport, Request
from edgeintel.security.pki import Role, TlsFiles, issue_ca, issue_cert, revoke
from tests.runtime.conftest import ServerProcess, free_port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    tmp = tmp_path_factory.mktemp("pki")
    ca = issue_ca(tmp / "ca")
    other_ca = issue_ca(tmp / "other", name="someone else's CA")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    return {
        "server": issue_cert(ca, "micro-1", Role.NODE, tmp / "ca"),
        "phone-0": issue_cert(ca, "phone-0", Role.DEVICE, tmp / "ca"),
        "phone-1": issue_cert(ca, "phone-1", Role.DEVICE, tmp / "ca"),
        "phone-2": issue_cert(ca, "phone-2", Role.DEVICE, tmp / "ca"),
        "foreign": issue_cert(other_ca, "phone-0", Role.DEVICE, tmp / "other"),
        "expired": issue_cert(ca, "phone-3", Role.DEVICE, tmp / "exp", valid_from=old, days=1),
    }


@pytest.fixture(scope="module")
def tls_server(
    model_repo: Path, pki: dict[str, TlsFiles], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("mtls")
    grpc_port = free_port()
    srv = ServerProcess(
        model_repo,
        tmp,
        "--sink",
        str(tmp / "sink.db"),
        "--grpc-port",
        str(grpc_port),
        tls=pki["server"],
    )
    srv.grpc_port = grpc_port  # type: ignore[attr-defined]
    try:
        yield srv.start()
    finally:
        srv.stop()


def _results(device: str, i: int = 0) -> dict[str, object]:
    return {"device": device, "records": [{"key": f"{device}:{i}", "seq": i, "t_s": 0.1 * i}]}


def _client(tls: TlsFiles | None, ca: Path) -> httpx.Client:
    verify = tls.client_context() if tls is not None else str(ca)
    return httpx.Client(verify=verify, timeout=5)


def test_keys_are_private(pki: dict[str, TlsFiles]) -> None:
    for files in pki.values():
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((pki["server"].ca.with_name("ca.key")).stat().st_mode) == 0o600


def test_device_with_its_certificate_is_served_and_submits_as_itself(
    tls_server: ServerProcess, pki: dict[str, TlsFiles]
) -> None:
    t = HttpTransport(tls_server.url, tls=pki["phone-0"])
    try:
        assert t.send(Request("GET", "/v2/health/ready")).status == 200
        body = httpx.Request("POST", "/", json=_results("phone-0")).content
        r = t.send(Request("POST", "/v1/results", body, {"content-type": "application/json"}))
        assert r.status == 200 and b'"accepted":1' in r.body.replace(b" ", b"")
        # another device's results with phone-0's certificate: refused
        body = httpx.Request("POST", "/", json=_results("phone-1")).content
        r = t.send(Request("POST", "/v1/results", body, {"content-type": "application/json"}))
        assert r.status == 401 and b"phone-0" in r.body and b"phone-1" in r.body
    finally:
        t.close()


@pytest.mark.parametrize("who", ["none", "foreign", "expired"])
def test_clients_without_a_valid_certificate_are_refused(
    tls_server: ServerProcess, pki: dict[str, TlsFiles], who: str
) -> None:
    tls = None if who == "none" else pki[who]
    with _client(tls, pki["server"].ca) as c, pytest.raises(httpx.TransportError):
        c.get(f"https://{tls_server.url}/v2/health/ready")
    # and plain HTTP gets no answer from the TLS port
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{tls_server.url}/v2/health/ready", timeout=5)


def _grpc_live(server: ServerProcess, tls: TlsFiles | None, ca: Path) -> bool:
    """tritonclient.grpc's is_server_live over TLS (with ``tls``'s certificate if given)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    cert = {} if tls is None else {"private_key": str(tls.key), "certificate_chain": str(tls.cert)}
    client = grpcclient.InferenceServerClient(
        f"127.0.0.1:{server.grpc_port}",  # type: ignore[attr-defined]
        ssl=True,
        root_certificates=str(ca),
        **cert,
    )
    try:
        return bool(client.is_server_live(client_timeout=5))
    except InferenceServerException:
        return False
    finally:
        client.close()


def test_a_revoked_device_is_refused_on_its_next_connection(
    tls_server: ServerProcess, pki: dict[str, TlsFiles]
) -> None:
    """On HTTP (disconnected as its connection opens) and on gRPC (each call refused)."""
    ca = pki["server"].ca
    url = f"https://{tls_server.url}/v2/health/ready"
    with _client(pki["phone-2"], ca) as c:
        assert c.get(url).status_code == 200
    assert _grpc_live(tls_server, pki["phone-2"], ca)
    assert not _grpc_live(tls_server, None, ca)  # no certificate: no gRPC either
    assert not _grpc_live(tls_server, pki["foreign"], ca)
    revoke(ca, [pki["phone-2"].cert])
    time.sleep(0.5)  # the server re-reads the CRL at most every 0.2 s
    with _client(pki["phone-2"], ca) as c, pytest.raises(httpx.TransportError):
        c.get(url)
    assert not _grpc_live(tls_server, pki["phone-2"], ca)
    with _client(pki["phone-0"], ca) as c:  # the others still connect
        assert c.get(url).status_code == 200
    assert _grpc_live(tls_server, pki["phone-0"], ca)
    assert '"event": "tls.revoked"' in tls_server.log.read_text()


def test_bad_tls_files_are_one_line_exit_2(
    model_repo: Path, pki: dict[str, TlsFiles], tmp_path: Path
) -> None:
    s = pki["server"]
    base = ["serve", str(model_repo), "--tls-cert", str(s.cert), "--tls-ca", str(s.ca)]
    key_as_cert = [*base[:3], str(s.key), "--tls-key", str(s.key), "--tls-ca", str(s.ca)]
    cases = [
        (base, "--tls-key: mutual TLS needs all of"),
        ([*base, "--tls-key", str(tmp_path / "nope.key")], "--tls-key"),
        ([*base, "--tls-key", str(pki["phone-0"].key)], "does not match --tls-cert"),
        (key_as_cert, "--tls-cert"),
    ]
    for args, words in cases:
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and words in r.output, (args, r.output)
        assert "Traceback" not in r.output


def test_a_device_certificate_names_the_device_everywhere() -> None:
    """Authenticator.device (both faces): the certificate's name wins, a device token of
    another name is refused, node and operator certificates leave the token's answer."""
    from edgeintel.runtime.auth import Authenticator, Tokens, Unauthorized
    from edgeintel.security.pki import Identity

    tokens = Tokens(
        devices={"phone-0": "phone-0-token-0123456789", "phone-1": "phone-1-token-0123456789"},
        nodes={"micro-1": "micro-1-token-0123456789"},
    )
    auth = Authenticator(tokens)
    cert0 = Identity("phone-0", Role.DEVICE, 1)
    assert auth.device("phone-0-token-0123456789", cert0) == "phone-0"
    with pytest.raises(Unauthorized, match="token of 'phone-1' with the certificate of 'phone-0'"):
        auth.device("phone-1-token-0123456789", cert0)
    assert auth.device("micro-1-token-0123456789", cert0) == "phone-0"  # relayed by a node
    node_cert = Identity("micro-1", Role.NODE, 2)
    assert auth.device("phone-1-token-0123456789", node_cert) == "phone-1"
    with pytest.raises(Unauthorized):  # a certificate does not replace a required token
        auth.device("", cert0)
    assert Authenticator(Tokens()).device("", cert0) == "phone-0"  # tokens off: the cert names it


class _RecordClient:
    """A TLS client over memory BIOs that sees the records on the wire: the server's
    application-data records per response are counted (``runtime.http_wire``)."""

    def __init__(self, server: ServerProcess, tls: TlsFiles) -> None:
        import socket
        import ssl

        host, port = server.url.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = tls.client_context().wrap_bio(self.inc, self.out, server_hostname=host)
        self.raw = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                self._feed(self._record())
        self.sock.sendall(self.out.read())

    def _record(self) -> tuple[int, bytes]:
        while len(self.raw) < 5 or len(self.raw) < 5 + int.from_bytes(self.raw[3:5], "big"):
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.raw += chunk
        n = 5 + int.from_bytes(self.raw[3:5], "big")
        rec, self.raw = self.raw[:n], self.raw[n:]
        return rec[0], rec

    def _feed(self, record: tuple[int, bytes]) -> None:
        self.inc.write(record[1])

    def exchange(self, request: bytes) -> tuple[bytes, int]:
        """Send one request; its response and the application-data records it came in."""
        import ssl

        self.tls.write(request)
        self.sock.sendall(self.out.read())
        plain, records = b"", 0
        while True:
            kind, rec = self._record()
            records += kind == 23
            self._feed((kind, rec))
            try:
                while True:
                    plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                pass
            head, sep, body = plain.partition(b"\r\n\r\n")
            if sep:
                length = [h for h in head.lower().split(b"\r\n") if h.startswith(b"content-length")]
                if len(body) >= int(length[0].split(b":")[1]):
                    return plain, records

    def close(self) -> None:
        self.sock.close()


def test_each_response_is_one_tls_record_and_large_bodies_arrive_whole(
    tls_server: ServerProcess, pki: dict[str, TlsFiles]
) -> None:
    """uvicorn writes head and body apart (two records, two sends, two wake-ups of the
    client); the server's protocol sends one. A 0.3 MB body (about 20 records, read into
    the protocol's reused buffer in several reads) is parsed whole."""
    import json

    c = _RecordClient(tls_server, pki["phone-0"])
    try:
        host = tls_server.url
        ready = f"GET /v2/health/ready HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        resp, records = c.exchange(ready)
        assert resp.startswith(b"HTTP/1.1 200") and records == 1
        n = 3000
        recs = [{"key": f"phone-0:big{i}", "seq": 10_000 + i, "t_s": 0.1 * i, "pad": "x" * 64}
                for i in range(n)]  # fmt: skip
        body = json.dumps({"device": "phone-0", "records": recs}).encode()
        assert len(body) > 250_000
        req = (f"POST /v1/results HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
        resp, records = c.exchange(req)
        assert resp.startswith(b"HTTP/1.1 200") and records == 1
        assert json.loads(resp.partition(b"\r\n\r\n")[2])["accepted"] == n
    finally:
        c.close()


def test_the_server_issues_no_session_tickets(pki: dict[str, TlsFiles]) -> None:
    """Two TLS 1.3 tickets per handshake were 0.3 of the server's handshake CPU, and no
    client of the runtime resumes (Python's ssl only does with an explicit session)."""
    assert pki["server"].server_context().num_tickets == 0
