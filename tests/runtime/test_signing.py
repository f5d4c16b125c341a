"""Signed model artifacts: a file tampered with and re-hashed in its manifest, an unsigned
file and a file signed by another key are refused with one line; a good one loads; the
CLI keeps signatures through export-repo and checks them in serve and device."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.errors import ConfigError, ModelError
from edgeintel.onnx_files import file_sha256
from edgeintel.runtime.repository import MANIFEST, ModelRepository, add_model
from edgeintel.security.signing import (
    ArtifactVerifier,
    generate_signing_key,
    load_signing_key,
    load_verify_key,
    sign_file,
    signature_path,
    verify_file,
)
from tests.runtime.conftest import ServerProcess, digits_onnx, identity_model


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "keys" / "signing.key"
    pub = generate_signing_key(key)
    return key, pub


def _rehash(mdir: Path) -> None:
    """What an attacker with write access does: rewrite the manifest's sha256 to match."""
    manifest = json.loads((mdir / MANIFEST).read_text())
    f = mdir / "1" / "model.onnx"
    manifest["versions"]["1"]["sha256"] = file_sha256(f)
    (mdir / MANIFEST).write_text(json.dumps(manifest))


def test_key_files_are_private_and_bad_ones_are_one_line(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_verify_key(pub) is not None and load_verify_key(key) is not None
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"signing key .*bad.pem: not an unencrypted PEM"):
        load_signing_key(bad)
    with pytest.raises(ConfigError, match=r"verify key .*bad.pem: not a PEM public key"):
        load_verify_key(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_verify_key(tmp_path / "missing.pub")


def test_tampered_rehashed_unsigned_and_foreign_files_are_refused(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    signer = load_signing_key(key)
    work = tmp_path / "onnx"
    work.mkdir()
    root = tmp_path / "repo"
    add_model(root, "good", identity_model(work / "a.onnx", "FP32"), signer=signer)
    add_model(root, "tampered", identity_model(work / "b.onnx", "FP32"), signer=signer)
    add_model(root, "unsigned", identity_model(work / "c.onnx", "FP32"))
    other = load_signing_key(Path(str(generate_signing_key(tmp_path / "other.key"))[:-4]))
    add_model(root, "foreign", identity_model(work / "d.onnx", "FP32"), signer=other)
    # tamper: a different (valid) model in place of the signed one, manifest re-hashed
    identity_model(root / "tampered" / "1" / "model.onnx", "FP64")
    _rehash(root / "tampered")
    # without signature checks the re-hashed file would be served: the sha256 alone is
    # no defence
    assert "tampered" in ModelRepository(root).models
    repo = ModelRepository(root, verify=ArtifactVerifier(pub))
    assert sorted(repo.models) == ["good"]
    assert "signature does not match" in repo.refused["tampered/1"]
    assert "unsigned (no model.onnx.sig beside it)" in repo.refused["unsigned/1"]
    assert "signature does not match" in repo.refused["foreign/1"]
    assert all("\n" not in why for why in repo.refused.values())
    # a garbled signature file is named as such
    signature_path(root / "good" / "1" / "model.onnx").write_text("junk\n")
    with pytest.raises(ModelError, match="not an edgeintel signature"):
        verify_file(root / "good" / "1" / "model.onnx", load_verify_key(pub))


def test_signature_covers_the_bytes_not_the_name(keys: tuple[Path, Path], tmp_path: Path) -> None:
    key, pub = keys
    f = identity_model(tmp_path / "m.onnx", "FP32")
    sign_file(f, load_signing_key(key))
    verify_file(f, load_verify_key(pub))
    f.write_bytes(f.read_bytes() + b"\0")  # one byte appended
    with pytest.raises(ModelError, match=r"m\.onnx: signature does not match"):
        verify_file(f, load_verify_key(pub))


def test_export_repo_keeps_and_makes_signatures(keys: tuple[Path, Path], tmp_path: Path) -> None:
    key, pub = keys
    onnx = digits_onnx(tmp_path / "m" / "digits.onnx")
    record = onnx.with_suffix(".json")
    out = tmp_path / "repo"
    r = CliRunner().invoke(
        app, ["export-repo", str(record), "-o", str(out), "--name", "d", "--signing-key", str(key)]
    )
    assert r.exit_code == 0, r.output
    assert ModelRepository(out, verify=ArtifactVerifier(pub)).versions("d") == ["1"]
    # a signed artifact exported without a key keeps its signature beside the file
    sign_file(onnx, load_signing_key(key))
    out2 = tmp_path / "repo2"
    r = CliRunner().invoke(app, ["export-repo", str(record), "-o", str(out2), "--name", "d"])
    assert r.exit_code == 0, r.output
    assert signature_path(out2 / "d" / "1" / "model.onnx").is_file()
    assert ModelRepository(out2, verify=ArtifactVerifier(pub)).versions("d") == ["1"]
    bad = tmp_path / "bad.key"
    bad.write_text("x")
    r = CliRunner().invoke(
        app, ["export-repo", str(record), "-o", str(tmp_path / "r3"), "--signing-key", str(bad)]
    )
    assert r.exit_code == 2 and "signing key" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r3").exists()


def test_serve_loads_only_signed_models(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A real server process with --verify-key: the good model is ready, the tampered and
    re-hashed one is refused (404 naming why), and the refusal is one log line."""
    key, pub = keys
    signer = load_signing_key(key)
    root = tmp_path / "repo"
    add_model(root, "good", identity_model(tmp_path / "a.onnx", "FP32"), signer=signer)
    add_model(root, "evil", identity_model(tmp_path / "b.onnx", "FP32"), signer=signer)
    identity_model(root / "evil" / "1" / "model.onnx", "FP64")
    _rehash(root / "evil")
    srv = ServerProcess(root, tmp_path, "--verify-key", str(pub))
    try:
        srv.start()
        base = f"http://{srv.url}"
        assert httpx.get(f"{base}/v2/models/good/ready").status_code == 200
        assert httpx.get(f"{base}/v2/models/evil").status_code == 404
        index = httpx.post(f"{base}/v2/repository/index", json={}).json()
        evil = next(m for m in index if m["name"] == "evil")
        assert evil["state"] == "UNAVAILABLE" and "signature does not match" in evil["reason"]
    finally:
        srv.stop()
    refused = [ln for ln in srv.log.read_text().splitlines() if "model.refused" in ln]
    assert len(refused) == 1 and "evil/1" in refused[0]
    r = CliRunner().invoke(app, ["serve", str(root), "--verify-key", str(tmp_path / "nope.pub")])
    assert r.exit_code == 2 and "verify key" in r.output and "cannot read" in r.output
