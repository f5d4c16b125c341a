"""Fixtures of the simulator tests: a local Ray cluster on loopback, started and stopped here."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """``ray start --head`` (2 CPUs, no dashboard, a private temp dir and auth token) in its
    own session; yields ``host:port``; SIGTERM to the head's ``--block`` process after,
    then anything left in its process group is killed. Skipped without the ``ray`` extra."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported here: Ray reads its auth
        pytest.skip("the optional ray extra is not installed")  # settings on first use
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed next to this Python")
    port = _free_port()
    token = secrets.token_hex(32)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # no ~/.ray/auth_token
    env = dict(
        os.environ,
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    tmp = tempfile.mkdtemp(prefix="ray_", dir="/tmp")  # short: Ray's socket paths are limited
    log = open(Path(tmp) / "head.log", "wb")  # noqa: SIM115 - closed in finally
    args = [str(ray_bin), "start", "--head", "--block", "--port", str(port),
            "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false",
            "--disable-usage-stats", "--temp-dir", tmp]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}; see {tmp}/head.log")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"Ray head not listening within 90 s; see {tmp}/head.log")
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)  # the head drains and stops its own processes
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this session is left
        proc.wait(10)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
