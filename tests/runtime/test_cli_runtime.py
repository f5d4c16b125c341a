"""CLI of the runtime: export-repo writes a servable Triton repository; bad input is one
line and exit code 2."""

from __future__ import annotations

from pathlib import Path

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
