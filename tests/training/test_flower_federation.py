"""A real Flower federation on loopback: SuperLink + 2 SuperNodes as processes, `flwr run`.

Checks that the rounds complete (``flwr ls --format json``) and that each round's
aggregate equals edgeintel's embedded aggregation applied to the same updates.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeintel.training.aggregate import AggregationConfig, aggregate
from edgeintel.training.flower import FlowerSettings, write_flower_app

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
    )
    return env


def _wait_health(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("SuperLink did not become healthy")


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = _env(home)
    port = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "flower-superlink"),
                    "--insecure",
                    "--disable-runtime-dependency-installation",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                cwd=tmp_path,
                stdout=(logs / "superlink.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_health(port, procs[0])
        for pid in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{port}",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(_free_port()),
                        "--node-config",
                        f"partition-id={pid} num-partitions=2",
                    ],
                    env=env,
                    cwd=tmp_path,
                    stdout=(logs / f"supernode-{pid}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        yield "loopback", env, logs
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def test_flower_federation_matches_embedded_aggregation(
    tmp_path: Path, federation: tuple[str, dict[str, str], Path]
) -> None:
    connection, env, logs = federation
    record = tmp_path / "record"
    settings = FlowerSettings(
        num_server_rounds=2,
        fraction_evaluate=0.0,  # central evaluation only: one ClientApp process per round
        dataset="digits",
        model="mlp",
        width=32,
        local_epochs=1,
        aggregation="fedavg",
        record_dir=str(record),
    )
    app_dir = write_flower_app(tmp_path / "app", settings)
    run = subprocess.run(
        [str(BIN / "flwr"), "run", str(app_dir), connection, "--stream"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ls = subprocess.run(
        [str(BIN / "flwr"), "ls", connection, "--format", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ls.returncode == 0, ls.stderr
    runs = json.loads(ls.stdout)["runs"]
    assert len(runs) == 1
    status = runs[0]["status"]
    assert status == "finished:completed", (
        status,
        run.stdout[-3000:],
        (logs / "superlink.log").read_text()[-3000:],
    )

    summary = json.loads((record / "summary.json").read_text())
    assert summary["completed_rounds"] == 2
    acc = summary["accuracy"]
    assert acc["2"] > acc["0"] + 0.3  # real training on real data happened
    for r in range(1, 3):
        rec = np.load(record / f"round-{r}.npz")
        updates, weights = list(rec["updates"]), rec["weights"]
        assert len(updates) == 2 and weights.sum() > 0
        delta = aggregate([[u] for u in updates], weights, AggregationConfig(rule="fedavg"))[0]
        np.testing.assert_allclose(rec["global_after"], rec["global_before"] + delta, atol=1e-7)
        if r > 1:
            prev = np.load(record / f"round-{r - 1}.npz")
            np.testing.assert_array_equal(rec["global_before"], prev["global_after"])
