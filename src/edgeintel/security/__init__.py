"""Security of the running system: signed model artifacts (Ed25519).

``signing``: a run's (or the user's) signing key, a detached ``.sig`` beside every
model file written into a repository, and the check servers and agents run before
loading one (``ArtifactVerifier``).
"""

from __future__ import annotations

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
    "generate_signing_key",
    "load_signing_key",
    "load_verify_key",
    "sign_file",
    "signature_path",
    "verify_file",
]
