"""The operator's browser bundle (``edgeintel certs export-operator``): a PKCS#12 file
that parses back to the operator's key, certificate and CA only with its password,
private on disk, refused in one line where it cannot be written; curl (an independent
TLS client) reaches the dashboard and statistics of a mutual-TLS node with it and is
refused without it. The browser itself: test_dashboard.py."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.security.bundle import export_pkcs12, operator_files
from edgeintel.security.pki import DeploymentPki, issue_deployment
from tests.runtime.conftest import ServerProcess


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> DeploymentPki:
    run = tmp_path_factory.mktemp("run")
    return issue_deployment(run / "runtime" / "pki", {"edge": ["127.0.0.1"]}, ["phone-0"])


def _der(pem: Path) -> bytes:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_bundle_holds_the_operator_key_certificate_and_ca(
    deployment: DeploymentPki, tmp_path: Path
) -> None:
    out = export_pkcs12(deployment.operator, tmp_path / "op.p12", "s3cret-pw")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    blob = out.read_bytes()
    key, cert, cas = pkcs12.load_key_and_certificates(blob, b"s3cret-pw")
    assert cert is not None and key is not None
    assert cert.public_bytes(serialization.Encoding.DER) == _der(deployment.operator.cert)
    assert [c.public_bytes(serialization.Encoding.DER) for c in cas] == [_der(deployment.ca)]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    assert key.public_key().public_bytes(enc, pub) == cert.public_key().public_bytes(enc, pub)
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(blob, b"wrong")
    # the key is encrypted in the file, not stored in the clear
    raw = serialization.load_pem_private_key(deployment.operator.key.read_bytes(), None)
    clear = raw.private_bytes(enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert clear not in blob


def test_operator_files_are_found_from_the_run_the_pki_or_the_operator_folder(
    deployment: DeploymentPki,
) -> None:
    pki = deployment.ca.parent.parent
    run = pki.parent.parent
    for where in (run, pki, pki / "operator"):
        assert operator_files(where).cert == deployment.operator.cert


def test_cli_writes_the_bundle_and_its_password_and_refuses_in_one_line(
    deployment: DeploymentPki, tmp_path: Path
) -> None:
    run = deployment.ca.parent.parent.parent.parent
    out = tmp_path / "op.p12"
    r = CliRunner().invoke(app, ["certs", "export-operator", str(run), "--p12", str(out)])
    assert r.exit_code == 0, r.output
    pw = out.with_name("op.p12.password")
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600
    password = pw.read_text().strip()
    assert len(password) >= 20 and password not in r.output  # never printed
    assert pkcs12.load_key_and_certificates(out.read_bytes(), password.encode())[1] is not None
    given = tmp_path / "given.txt"
    given.write_text("chosen-password\n")
    out2 = tmp_path / "two.p12"
    args = ["certs", "export-operator", str(run), "--p12", str(out2), "--password-file", str(given)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert pkcs12.load_key_and_certificates(out2.read_bytes(), b"chosen-password")[1] is not None
    assert not out2.with_name("two.p12.password").exists()
    cases = [
        (["certs", "export-operator", str(run), "--p12", str(out)], "exists"),
        (
            ["certs", "export-operator", str(tmp_path), "--p12", str(tmp_path / "x.p12")],
            "no operator certificate",
        ),
        (
            [*args[:3], "--p12", str(tmp_path / "y.p12"), "--password-file", str(tmp_path / "no")],
            "--password-file",
        ),
    ]
    for argv, words in cases:
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 2, (argv, r.output)
        assert words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x.p12").exists() and not (tmp_path / "y.p12").exists()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reaches_the_dashboard_with_the_bundle_only(
    model_repo: Path, deployment: DeploymentPki, tmp_path: Path
) -> None:
    p12 = export_pkcs12(deployment.operator, tmp_path / "op.p12", "curl-pw")
    srv = ServerProcess(model_repo, tmp_path, tls=deployment.nodes["edge"]).start()
    try:
        base = ["curl", "-sS", "--max-time", "10", "--cacert", str(deployment.ca)]
        for path, words in (("/dashboard", b"<html"), ("/v2/stats", b'"requests"')):
            url = f"https://{srv.url}{path}"
            ok = subprocess.run(
                [*base, "--cert-type", "P12", "--cert", f"{p12}:curl-pw", url],
                capture_output=True,
                timeout=30,
            )
            assert ok.returncode == 0 and words in ok.stdout, ok.stderr
            refused = subprocess.run([*base, url], capture_output=True, timeout=30)
            assert refused.returncode != 0  # no client certificate: no TLS session
    finally:
        srv.stop()
