"""A scenario's certificate authority, node and device certificates, mutual TLS.

``edgeintel run`` issues one CA per run (``issue_ca``) and one certificate per serving
node and per device (``issue_cert``): the subject's common name is the node's or
device's name and its organizational unit its role (``node``, ``device``,
``operator``), so a server knows who is on the other end of a connection without a
token. Keys are written 0600. ``revoke`` writes a CRL signed by the CA; a server
reloads it when the file changes (``Revocations``) and closes, on its next
connection, any client whose certificate serial it lists.

``TlsFiles`` is what a process is given (``--tls-cert``, ``--tls-key``, ``--tls-ca``,
``--tls-crl``; files the user provides on several machines work the same way);
``check`` turns a missing or malformed file into one line (``ConfigError``).
``server_context`` requires a client certificate from the CA; ``client_context``
presents its own and verifies the server against the CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeintel.errors import ConfigError

__all__ = [
    "DeploymentPki",
    "Identity",
    "Revocations",
    "Role",
    "TlsFiles",
    "check_ca",
    "identity_of",
    "issue_ca",
    "issue_cert",
    "issue_deployment",
    "revoke",
]


class Role(StrEnum):
    """What a certificate's holder is (its subject's organizational unit)."""

    NODE = "node"
    DEVICE = "device"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Identity:
    """Who presented a certificate: ``name`` (common name), ``role`` and ``serial``."""

    name: str
    role: Role | None
    serial: int


def _private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue_ca(folder: str | Path, name: str = "edgeintel scenario CA", days: int = 30) -> Path:
    """A fresh CA (P-256) in ``folder``: ``ca.pem`` and ``ca.key`` (0600); returns ``ca.pem``."""
    out = Path(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _private(out / "ca.key", _key_pem(key))
    (out / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out / "ca.pem"


def _load_ca(ca_pem: Path) -> tuple[x509.Certificate, Any]:
    cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    key = serialization.load_pem_private_key(ca_pem.with_name("ca.key").read_bytes(), password=None)
    return cert, key


def issue_cert(
    ca_pem: str | Path,
    name: str,
    role: Role,
    folder: str | Path,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    valid_from: dt.datetime | None = None,
    days: float = 30.0,
) -> TlsFiles:
    """A certificate for ``name`` in ``role`` signed by the CA at ``ca_pem`` (its key
    beside it as ``ca.key``), valid for ``hosts`` (IP addresses or DNS names) from
    ``valid_from`` (default: now) for ``days``; written as ``<name>.pem`` / ``<name>.key``
    (0600) in ``folder``."""
    ca_path = Path(ca_pem)
    ca_cert, ca_key = _load_ca(ca_path)
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(role)),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = Path(folder)
    _private(out / f"{name}.key", _key_pem(key))
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(out / f"{name}.pem", out / f"{name}.key", ca_path, ca_path.with_name("crl.pem"))


def revoke(ca_pem: str | Path, certs: list[str | Path]) -> Path:
    """Add the serials of ``certs`` (PEM files) to the CA's CRL (``crl.pem`` beside
    ``ca.pem``, created when missing); returns the CRL's path."""
    ca_path = Path(ca_pem)
    ca_cert, ca_key = _load_ca(ca_path)
    crl_path = ca_path.with_name("crl.pem")
    serials = set(_crl_serials(crl_path)) if crl_path.is_file() else set()
    serials |= {x509.load_pem_x509_certificate(Path(c).read_bytes()).serial_number for c in certs}
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
    )
    for s in sorted(serials):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = crl_path.with_name(crl_path.name + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(crl_path)  # a reloading server never reads half a file
    return crl_path


def _crl_serials(path: Path, ca: x509.Certificate | None = None) -> list[int]:
    crl = x509.load_pem_x509_crl(path.read_bytes())
    if ca is not None and not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise ConfigError(f"--tls-crl {path}: not signed by the CA of --tls-ca")
    return [r.serial_number for r in crl]


def identity_of(der: bytes) -> Identity:
    """The ``Identity`` in a DER certificate (what a TLS peer presented)."""
    cert = x509.load_der_x509_certificate(der)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    role = None
    if ou and str(ou[0].value) in Role.__members__.values():
        role = Role(str(ou[0].value))
    return Identity(str(cn[0].value) if cn else "", role, cert.serial_number)


class Revocations:
    """The revoked serials of a CRL file, re-read when the file changes (checked at most
    every ``interval_s`` s): a revoked client is refused on its next connection."""

    def __init__(self, crl: Path | None, ca: Path, interval_s: float = 0.2) -> None:
        self.crl, self.interval_s = crl, interval_s
        self._ca = x509.load_pem_x509_certificate(ca.read_bytes())
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self.serials: frozenset[int] = frozenset()
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if self.crl is None or (not force and now - self._checked < self.interval_s):
            return
        with self._lock:
            self._checked = now
            try:
                st = self.crl.stat()
            except FileNotFoundError:
                self.serials, self._stamp = frozenset(), None
                return
            stamp = (st.st_mtime, st.st_size)
            if stamp != self._stamp:
                try:
                    self.serials = frozenset(_crl_serials(self.crl, self._ca))
                except ValueError:
                    if force:
                        raise ConfigError(
                            f"--tls-crl {self.crl}: not a PEM certificate revocation list"
                        ) from None
                    return  # keep the last good list while a bad file is being replaced
                self._stamp = stamp

    def revoked(self, serial: int) -> bool:
        self.refresh()
        return serial in self.serials


@dataclass(frozen=True)
class TlsFiles:
    """One party's TLS material: its certificate and key, the CA it trusts, and the CA's
    CRL (optional; servers reload it)."""

    cert: Path
    key: Path
    ca: Path
    crl: Path | None = None

    def check(self) -> TlsFiles:
        """``ConfigError`` (one line naming the option and file) unless every file reads as
        what it should be and the key matches the certificate."""
        for option, path in (("--tls-cert", self.cert), ("--tls-key", self.key),
                             ("--tls-ca", self.ca)):  # fmt: skip
            if not path.is_file():
                raise ConfigError(f"{option} {path}: file not found")
        try:
            cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        except ValueError:
            raise ConfigError(f"--tls-cert {self.cert}: not a PEM certificate") from None
        try:
            x509.load_pem_x509_certificate(self.ca.read_bytes())
        except ValueError:
            raise ConfigError(f"--tls-ca {self.ca}: not a PEM CA certificate") from None
        try:
            key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"--tls-key {self.key}: not an unencrypted PEM private key") from None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
            raise ConfigError(f"--tls-key {self.key}: does not match --tls-cert {self.cert}")
        if self.crl is not None and self.crl.is_file():
            Revocations(self.crl, self.ca)
        return self

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.2+ server side that requires a client certificate signed by the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert), str(self.key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        # no TLS 1.3 session tickets: issuing two per handshake was 0.3 of the server's
        # ~1 ms handshake, and no client of the runtime resumes (Python's ssl only does
        # with an explicit session); every connection is a full, verified handshake
        ctx.num_tickets = 0
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """TLS 1.2+ client side: presents this certificate, verifies the server by the CA."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def grpc_server_context(self) -> ssl.SSLContext:
        """``server_context`` for the gRPC port: the same mutual TLS, ALPN ``h2``."""
        ctx = self.server_context()
        ctx.set_alpn_protocols(["h2"])
        return ctx


def check_ca(ca_pem: str | Path) -> Path:
    """``ca_pem`` if it is a PEM CA certificate with its private key beside it as
    ``ca.key`` (what ``issue_cert`` signs with); a ``ValueError`` saying what is wrong."""
    path = Path(ca_pem)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        cert, key = _load_ca(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: its private key {path.with_name('ca.key')} is missing") from None
    except (ValueError, TypeError):
        raise ValueError(f"{path}: expected a PEM CA certificate with ca.key beside it") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError(f"{path}: not a CA certificate (BasicConstraints ca=true)")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise ValueError(f"{path}: ca.key beside it does not match the certificate")
    return path


@dataclass(frozen=True)
class DeploymentPki:
    """The TLS files of one deployment: its CA, one ``TlsFiles`` per serving node and
    per device, and the operator's (readiness probes, statistics, dashboard)."""

    ca: Path
    nodes: dict[str, TlsFiles]
    devices: dict[str, TlsFiles]
    operator: TlsFiles

    @property
    def certificates(self) -> int:
        """Certificates issued for this deployment (the CA's not counted)."""
        return len(self.nodes) + len(self.devices) + 1


def issue_deployment(
    folder: str | Path,
    nodes: Mapping[str, Iterable[str]],
    devices: Iterable[str],
    ca: str | Path | None = None,
    days: float = 30.0,
) -> DeploymentPki:
    """A deployment's certificates in ``folder`` (mode 0700): a fresh CA there unless
    ``ca`` names the user's (several machines of one deployment share it), one node
    certificate per entry of ``nodes`` (name -> hosts it is reached at, loopback added),
    one device certificate per name of ``devices`` and an operator's. Keys 0600."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    ca_pem = check_ca(ca) if ca is not None else issue_ca(out / "ca", days=math.ceil(days))
    node_files = {
        name: issue_cert(
            ca_pem,
            name,
            Role.NODE,
            out / "nodes",
            tuple(dict.fromkeys((*hosts, "127.0.0.1", "localhost"))),
            days=days,
        )
        for name, hosts in nodes.items()
    }
    device_files = {
        name: issue_cert(ca_pem, name, Role.DEVICE, out / "devices", days=days) for name in devices
    }
    operator = issue_cert(ca_pem, "operator", Role.OPERATOR, out / "operator", days=days)
    return DeploymentPki(ca_pem, node_files, device_files, operator)
