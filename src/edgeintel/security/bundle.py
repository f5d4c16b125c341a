"""The operator's certificate as a browser imports it: a PKCS#12 bundle.

A browser reaches a node's dashboard over mutual TLS only with the operator's
certificate and key in its store, and it takes them as one password-protected
PKCS#12 file (``.p12``). ``export_pkcs12`` writes one (PBES2: AES-256-CBC, PBKDF2 with
SHA-256; what current Chromium, Firefox, macOS and Windows import) holding the key,
the certificate and the CA that issued it; ``operator_files`` finds the operator's
files of a run (``<run>/runtime/pki/operator``). The browser must also trust the CA
for websites (import ``ca.pem`` as an authority): docs/runtime.md says how.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from edgeintel.errors import ConfigError
from edgeintel.security.pki import TlsFiles

__all__ = ["KDF_ROUNDS", "export_pkcs12", "new_password", "operator_files"]

KDF_ROUNDS = 600_000  # PBKDF2-SHA256 iterations (OWASP's 2023 recommendation)


def new_password() -> str:
    """A random password for a bundle (128 bits, URL-safe text)."""
    return secrets.token_urlsafe(16)


def operator_files(path: str | Path) -> TlsFiles:
    """The operator's ``TlsFiles`` under ``path``: a run folder, its ``runtime/pki``
    folder or the ``operator`` folder itself; ``ConfigError`` (one line) when none is
    there."""
    root = Path(path)
    for pki in (root / "runtime" / "pki", root, root.parent):
        cert, key = pki / "operator" / "operator.pem", pki / "operator" / "operator.key"
        ca = pki / "ca" / "ca.pem"
        if cert.is_file() and key.is_file() and ca.is_file():
            crl = ca.with_name("crl.pem")
            return TlsFiles(cert, key, ca, crl).check()
    raise ConfigError(
        f"{root}: no operator certificate (expected a run folder with "
        "runtime/pki/operator/operator.pem, a pki folder or its operator folder)"
    )


def export_pkcs12(files: TlsFiles, out: str | Path, password: str, name: str = "") -> Path:
    """Write ``files``' key, certificate and CA as a PKCS#12 bundle protected by
    ``password`` to ``out`` (mode 0600); returns its path. ``name``: the friendly name a
    browser lists (default: the certificate's common name)."""
    if not password:
        raise ConfigError("--password-file: the bundle's password is empty")
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    if not name:
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = f"edgeintel {cn[0].value!s}" if cn else "edgeintel"
    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    blob = pkcs12.serialize_key_and_certificates(
        name.encode(),
        key,  # type: ignore[arg-type]
        cert,
        [ca],
        enc,
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(blob)
    return path
