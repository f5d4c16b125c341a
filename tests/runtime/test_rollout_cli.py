"""``edgeintel rollout`` / ``versions`` against a real ``edgeintel serve`` process: a version
added to the repository of a running node is loaded hot and rolled out to devices that
reach it over HTTP; bad command lines are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeintel.cli import app
from edgeintel.onnx_files import make_session
from edgeintel.runtime.agent import DeviceAgent, DeviceStream
from edgeintel.runtime.repository import add_model
from edgeintel.runtime.store import DeviceStore
from edgeintel.runtime.transport import HttpTransport
from edgeintel.runtime.updater import ModelUpdater
from tests.runtime.conftest import ServerProcess, linear_onnx, real_digits

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["rollout", "127.0.0.1:1", "--model", "m", "--version", "2"], "cannot reach the node"),
        (["rollout", "nohost", "--model", "m", "--version", "2"], "ADDRESS: expected host:port"),
        (["rollout", "127.0.0.1:1", "--model", "m", "--version", "v2"], "--version: expected"),
        (["rollout", "127.0.0.1:1", "--model", "m", "--version", "2", "--stages", "0.5,0.2"],
         "--stages: expected increasing shares"),
        (["rollout", "127.0.0.1:1", "--model", "m", "--version", "2", "--stages", "a"],
         "--stages: expected shares"),
        (["versions", "127.0.0.1:1"], "cannot reach the node"),
    ],
)  # fmt: skip
def test_bad_command_lines_are_one_line(args: list[str], words: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_rollout_of_a_version_added_to_a_running_node(tmp_path: Path) -> None:
    x, y = real_digits()
    repo = tmp_path / "repo"
    add_model(repo, "digits", linear_onnx(tmp_path / "v1.onnx", x[:900], y[:900]), 1)
    srv = ServerProcess(repo, tmp_path, "--sink", str(tmp_path / "sink.db"))
    agents: list[DeviceAgent] = []
    try:
        srv.start()
        # the new version arrives in the running node's repository, then is rolled out
        add_model(repo, "digits", linear_onnx(tmp_path / "v2.onnx", x[:1200], y[:1200]), 2)
        r = runner.invoke(
            app,
            ["rollout", srv.url, "--model", "digits", "--version", "2", "--no-wait",
             "--stages", "0.5,1", "--min-results", "40", "--looks", "1"],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "version 2 over 1" in r.output
        for i in range(4):
            t = HttpTransport(srv.url)
            pick = slice(1200 + i, None, 4)
            stream = DeviceStream(x[pick], y[pick], interval_s=0.0)
            agents.append(
                DeviceAgent(
                    f"cam-{i}", stream, make_session(repo / "digits" / "1" / "model.onnx"),
                    DeviceStore(tmp_path / f"cam-{i}.db"), t, model="digits",
                    updater=ModelUpdater("digits", tmp_path / f"cam-{i}", t),
                )
            )  # fmt: skip
        for k in range(1, 4):  # rounds: each agent produces and delivers 30 more results
            for a in agents:
                a.run(30 * k, drain_timeout_s=10)
        out = runner.invoke(app, ["versions", srv.url, "--json"])
        status = json.loads(out.output)
        assert status["rollouts"]["digits"]["state"] == "promoted", status
        assert set(status["devices"]) == {f"cam-{i}" for i in range(4)}
        table = runner.invoke(app, ["versions", srv.url]).output
        assert "promoted" in table and "cam-0" in table
    finally:
        for a in agents:
            a.store.close()
            assert a.transport is not None
            a.transport.close()
        srv.stop()
    log = srv.log.read_text()
    assert '"event": "rollout.started"' in log and '"event": "rollout.promoted"' in log
