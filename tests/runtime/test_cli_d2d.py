"""D2D by hand with ``edgeintel device``: one device process answers its neighbours
(``--serve-d2d``), another sends it every input (``--tier d2d --d2d NAME=HOST:PORT``);
two real processes on a real socket, every input answered by the neighbour, the
requester keeping its own results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgeintel.runtime.nodes import free_port
from tests.conftest import tiny_scenario_dict
from tests.runtime.conftest import ROOT, linear_onnx, real_digits


def _json(out: str) -> dict:
    return json.loads(out[out.index("{") :])


@pytest.mark.slow
def test_device_serves_and_uses_d2d_by_hand(tmp_path: Path) -> None:
    x, y = real_digits()
    onnx = linear_onnx(tmp_path / "m.onnx", x[:900], y[:900])
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(tiny_scenario_dict()))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    port = free_port()
    base = [sys.executable, "-m", "edgeintel", "device", str(sc), "--onnx", str(onnx)]
    helper = subprocess.Popen(
        [*base, "--device", "phone-1", "--store", str(tmp_path / "h.db"), "--limit", "100000",
         "--duration-s", "18", "--drain-timeout-s", "0", "--serve-d2d", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the helper listens once its agent is built
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert helper.poll() is None, helper.communicate()
            time.sleep(0.2)
        req = subprocess.run(
            [*base, "--device", "phone-0", "--store", str(tmp_path / "r.db"), "--limit", "30",
             "--rate-hz", "50", "--tier", "d2d", "--d2d", f"phone-1=127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert req.returncode == 0, req.stderr
        mine = _json(req.stdout)
        assert mine["placements"] == {"d2d": 30} and mine["store"]["appended"] == 30
        out, err = helper.communicate(timeout=120)  # its own 18 s, then it reports
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.communicate()
    assert helper.returncode == 0, err
    served = _json(out)["d2d_served"]
    assert sum(served.values()) == 30  # the neighbour's agent answered each input once


def test_d2d_options_are_checked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeintel.cli import app

    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(tiny_scenario_dict()))
    common = ["device", str(sc), "--device", "phone-0", "--onnx", str(tmp_path / "m.onnx"),
              "--store", str(tmp_path / "r.db")]  # fmt: skip
    for extra, words in (
        (["--tier", "d2d"], "--d2d: expected NAME=HOST:PORT"),
        (["--tier", "d2d", "--d2d", "phone-1=nowhere"], "--d2d: expected host:port"),
        (["--d2d", "phone-1=127.0.0.1:9"], "--d2d: names the helper of --tier d2d"),
    ):
        res = CliRunner().invoke(app, [*common, *extra])
        assert res.exit_code == 2, res.output
        assert words in res.output, res.output
