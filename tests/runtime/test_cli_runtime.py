"""CLI of the runtime: export-repo writes a servable Triton repository; bad input is one
line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.models.export import ModelArtifact
from edgeintel.runtime.repository import ModelRepository
from tests.runtime.conftest import digits_onnx


def test_export_repo_from_artifact(tmp_path: Path) -> None:
    onnx = digits_onnx(tmp_path / "m" / "digits.onnx")
    record = onnx.with_suffix(".json")
    assert ModelArtifact.load(record).sha256
    out = tmp_path / "repo"
    res = CliRunner().invoke(app, ["export-repo", str(record), "-o", str(out), "--name", "d"])
    assert res.exit_code == 0, res.output
    repo = ModelRepository(out)
    assert repo.versions("d") == ["1"] and not repo.refused
    assert (out / "d" / "config.pbtxt").read_text().startswith('name: "d"')
    # an artifact whose file changed since export is not packaged
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    res = CliRunner().invoke(app, ["export-repo", str(record), "-o", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "sha256" in res.output


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "model repository not found" in r.output
    tokens = tmp_path / "t.yaml"
    tokens.write_text("phone-0: short\n")
    (tmp_path / "repo").mkdir()
    r = CliRunner().invoke(app, ["serve", str(tmp_path / "repo"), "--tokens", str(tokens)])
    assert r.exit_code == 2 and ">= 16 characters" in r.output
    assert "Traceback" not in r.output


def _two_edges(tmp_path: Path, **deploy: object) -> Path:
    import yaml

    from tests.conftest import tiny_scenario_dict

    sc = tiny_scenario_dict()
    sc["edge_servers"] = [
        {"name": "micro-1", "kind": "micro"},
        {"name": "micro-2", "kind": "micro"},
    ]
    sc["devices"] = [
        {"name": "phone", "count": 2, "profile": "phone", "attach": "micro-1"},
        {"name": "cam", "count": 2, "profile": "phone", "attach": "micro-2"},
    ]
    sc["links"] = [
        {"between": ["micro-1", "cloud"], "bandwidth_mbps": 100, "rtt_ms": 20},
        {"between": ["micro-2", "cloud"], "bandwidth_mbps": 100, "rtt_ms": 20},
    ]
    sc["settings"]["runtime"] = {
        "rate_hz": 20,
        "deploy": {"enabled": True, "duration_s": 2, "drain_timeout_s": 20, **deploy},
    }
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    return f


def test_run_addresses_and_subsets_are_validated(tmp_path: Path) -> None:
    """--address / --only / deploy settings: one line naming the option or field, exit 2,
    before anything is trained."""
    from edgeintel.security.pki import Role, issue_ca, issue_cert

    f = _two_edges(tmp_path)
    ca = issue_ca(tmp_path / "ca")
    leaf = issue_cert(ca, "x", Role.NODE, tmp_path / "leaf")
    not_ca = leaf.cert.with_name("ca.pem")  # a leaf certificate with a key named ca.key
    leaf.cert.rename(not_ca)
    leaf.key.rename(not_ca.with_name("ca.key"))
    cases = [
        (["--address", "micro-1"], "--address 'micro-1': expected NODE=HOST:PORT"),
        (["--address", "micro-1=10.0.0.2"], "expected host:port"),
        (["--address", "micro-1=10.0.0.2:99999"], "port in 1..65535"),
        (["--address", "edge-x=10.0.0.2:8000"], "addresses.edge-x: unknown node 'edge-x'"),
        (["--only", "nodes"], "deploy.only: unknown 'nodes'; expected 'devices' or a node"),
        (
            ["--only", "devices", "--address", "micro-1=127.0.0.1:8001"],
            "the agents need the address of micro-2",
        ),
        (["--set", "settings.runtime.deploy.placements.bus=cloud"], "unknown device group 'bus'"),
        (["--set", "settings.runtime.deploy.placement=fog"], "settings.runtime.deploy.placement"),
        (["--set", "settings.runtime.deploy.tls_ca=nope.pem"], "deploy.tls_ca"),
        (["--set", f"settings.runtime.deploy.tls_ca={not_ca}"], "not a CA certificate"),
        (
            [
                "--set",
                f"settings.runtime.deploy.tls_ca={ca}",
                "--set",
                "settings.runtime.deploy.tls=false",
            ],
            "deploy.tls_ca: a CA for mutual TLS, but tls is false",
        ),
    ]
    for extra, message in cases:
        r = CliRunner().invoke(app, ["run", str(f), "--runs-dir", str(tmp_path / "runs"), *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output, (extra, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 2, r.output


@pytest.mark.slow
def test_devices_run_against_servers_started_separately(tmp_path: Path) -> None:
    """Two `edgeintel serve` processes started on their own (as on two machines), then
    `edgeintel run --only devices --address ...` points the agents at them: every result
    reaches the server its device is attached to, exactly once, over mutual TLS with the
    user's CA (deploy.tls_ca): the servers' certificates issued from it beforehand, the
    agents' by the run."""
    import json
    import sqlite3

    from edgeintel.runtime.repository import add_model
    from edgeintel.security.pki import Role, issue_ca, issue_cert
    from tests.runtime.conftest import ServerProcess, free_port

    repo = tmp_path / "repo"
    add_model(repo, "model", digits_onnx(tmp_path / "m.onnx"), 1)
    names = ["phone-0", "phone-1", "cam-0", "cam-1"]
    tokens = {
        "devices": {n: f"{n}-token-0123456789" for n in names},
        "operators": {"admin": "admin-token-0123456789"},
    }
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps(tokens))
    ca = issue_ca(tmp_path / "user-ca")
    servers = {
        node: ServerProcess(
            repo,
            tmp_path,
            "--tokens",
            str(tokens_file),
            "--sink",
            str(tmp_path / f"{node}.db"),
            port=free_port(),
            tls=issue_cert(ca, node, Role.NODE, tmp_path / "node-certs"),
        )
        for node in ("micro-1", "micro-2")
    }
    f = _two_edges(tmp_path, placement="edge", tokens_file=str(tokens_file), tls_ca=str(ca))
    try:
        for s in servers.values():
            s.start()
        args = ["run", str(f), "--runs-dir", str(tmp_path / "runs"), "--run-id", "r", "-q"]
        for stage in ("data", "train", "export", "runtime"):
            args += ["--stage", stage]
        args += ["--only", "devices"]
        for node, s in servers.items():
            args += ["--address", f"{node}={s.url}"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    finally:
        codes = {n: s.stop() for n, s in servers.items()}
    rt = json.loads((tmp_path / "runs" / "r" / "results.json").read_text())["runtime"]
    assert rt["devices"] == 4 and rt["produced"] >= 4 * 20
    assert rt["delivered"] == rt["produced"] and rt["kept_on_devices"] == 0
    assert all(not v["started_here"] for v in rt["servers"].values())
    assert rt["transport"]["ca"] == "settings.runtime.deploy.tls_ca"
    assert rt["transport"]["certificates"] == 4 + 1  # the agents' and the operator's
    for node, prefix in (("micro-1", "phone"), ("micro-2", "cam")):
        db = sqlite3.connect(tmp_path / f"{node}.db")
        devices = {d for (d,) in db.execute("SELECT DISTINCT device FROM results")}
        db.close()
        assert devices == {f"{prefix}-0", f"{prefix}-1"}
        assert codes[node] in (0, -15)
    assert rt["placements"].get("edge", 0) > 0


def test_device_cli_filters_with_a_runs_threshold(tiny_scenario_file: Path, tmp_path: Path) -> None:
    """`edgeintel device --filter-from results.json`: the caching stage's threshold for this
    device; skipped inputs reuse the last result and are stored like the others."""
    import json

    onnx = digits_onnx(tmp_path / "d.onnx")
    results = tmp_path / "results.json"
    per_device = {"phone-0": {"threshold": {"feature": "pixel", "threshold": 1.0}}}
    results.write_text(
        json.dumps({"run_id": "r", "caching": {"filter": {"per_device": per_device}}})
    )
    base = ["device", str(tiny_scenario_file), "--device", "phone-0", "--onnx", str(onnx)]
    base += ["--limit", "12", "--rate-hz", "1000"]
    r = CliRunner().invoke(
        app, [*base, "--store", str(tmp_path / "a.db"), "--filter-from", str(results)]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    # pixel difference <= 1.0 always: every input after the first is skipped but the probe
    # after 10 skips (adapt: on)
    assert out["produced"] == 12 and out["skipped"] == 10
    assert out["placements"] == {"device": 2, "reused": 10}
    assert out["bytes_not_uploaded"] == 10 * 64 * 4
    r = CliRunner().invoke(
        app, [*base, "--store", str(tmp_path / "b.db"), "--filter-from", str(tmp_path / "x")]
    )
    assert r.exit_code == 2 and "--filter-from" in r.output and "phone-0" in r.output
    r = CliRunner().invoke(app, [*base, "--store", str(tmp_path / "c.db"), "--filter"])
    assert r.exit_code == 0 and json.loads(r.output)["produced"] == 12
