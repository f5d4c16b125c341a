"""Security of the running system: signed model artifacts (Ed25519) and mutual TLS.

``signing``: a run's (or the user's) signing key, a detached ``.sig`` beside every
model file written into a repository, and the check servers and agents run before
loading one (``ArtifactVerifier``). ``pki``: a deployment's certificate authority and
its node, device and operator certificates (``issue_deployment``), revocation, and
the TLS contexts a party builds from its files (``TlsFiles``). ``mtls``: the HTTP
server's per-connection identity and revocation check.
"""

from __future__ import annotations

from edgeintel.security.pki import (
    DeploymentPki,
    Identity,
    TlsFiles,
    check_ca,
    issue_ca,
    issue_cert,
    issue_deployment,
    revoke,
)
from edgeintel.security.signing import (
    SIGNATURE_SUFFIX,
    ArtifactVerifier,
    generate_signing_key,
    load_signing_key,
    load_verify_key,
    sign_file,
    signature_path,
    verify_file,
)

__all__ = [
    "SIGNATURE_SUFFIX",
    "ArtifactVerifier",
    "DeploymentPki",
    "Identity",
    "TlsFiles",
    "check_ca",
    "generate_signing_key",
    "issue_ca",
    "issue_cert",
    "issue_deployment",
    "load_signing_key",
    "load_verify_key",
    "revoke",
    "sign_file",
    "signature_path",
    "verify_file",
]
