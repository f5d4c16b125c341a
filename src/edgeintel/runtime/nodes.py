"""Starting the serving nodes of a deployment: one ``edgeintel serve`` process per
edge server or cloud, on loopback or at a given address.

Both sides of a node's start-up live here: the runtime stage writes a node config
(``write_node_config``), starts and supervises the processes (``ServerProcess``,
``free_port``); ``edgeintel serve`` reads the config back (``node_setup``), builds the
upstream transport to the cloud (``upstream_transport``) and clocks the link traces
from the run's origin (``trace_clock``). ``deploy_overrides`` turns ``run --address
--only`` into ``settings.runtime.deploy`` assignments.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeintel.errors import ConfigError, EdgeIntelError

if TYPE_CHECKING:
    from edgeintel.caching.settings import ResultCacheSettings
    from edgeintel.runtime.transport import Transport
    from edgeintel.scenario import Scenario
    from edgeintel.topology import LinkSpec

__all__ = [
    "SERVER_COMMAND",
    "ServerProcess",
    "deploy_overrides",
    "drain_upstream",
    "free_port",
    "node_setup",
    "trace_clock",
    "upstream_transport",
    "write_node_config",
]


def deploy_overrides(addresses: list[str] | None, only: list[str] | None) -> list[str]:
    """``edgeintel run --address NODE=HOST:PORT --only PART`` as ``--set`` assignments of
    ``settings.runtime.deploy`` (checked against the scenario when it is validated)."""
    from edgeintel.runtime.settings import parse_address

    out = []
    for item in addresses or []:
        node, sep, addr = item.partition("=")
        if not sep or not node.strip() or "." in node:
            raise ConfigError(
                f"--address {item!r}: expected NODE=HOST:PORT, e.g. edge-a=10.0.0.2:8000"
            )
        try:
            parse_address(addr)
        except ValueError as exc:
            raise ConfigError(f"--address {item!r}: {exc}") from None
        out.append(f"settings.runtime.deploy.addresses.{node.strip()}={json.dumps(addr.strip())}")
    if only:
        out.append(f"settings.runtime.deploy.only={json.dumps([o.strip() for o in only])}")
        out.append("settings.runtime.deploy.enabled=true")
    if addresses:
        out.append("settings.runtime.deploy.enabled=true")
    return out


# ---------------------------------------------------------------------- node config


def write_node_config(path: Path, sc: Scenario, node: str, cache: bool = True) -> Path:
    """Write what ``edgeintel serve --node-config`` needs to know of the scenario about
    ``node`` (its result cache, its backhaul links to the cloud, the cloud's name), so a
    server process loads no scenario. ``cache=False``: no result cache on this node (it
    stands aside, ``caching.filter_cost.cache_pays``)."""
    cs = sc.settings.caching
    cloud = sc.cloud.name
    path.write_text(
        json.dumps(
            {
                "result_cache": cs.result_cache.model_dump(mode="json")
                if cs.enabled and cs.result_cache.enabled and cache
                else None,
                "backhaul": [
                    link.model_dump(mode="json", exclude={"between"})
                    for link in sc.topology.links_to_cloud(node)
                ]
                if node != cloud
                else [],
                "upstream": cloud,
            }
        )
    )
    return path


def node_setup(
    scenario: Path | None, node_config: Path | None, node: str | None, relays: bool
) -> tuple[ResultCacheSettings | None, tuple[list[LinkSpec], str]]:
    """(result cache settings or None, (backhaul links, upstream name)) of a node, from a
    scenario (``--scenario``, ``--node``) or a node config file (``--node-config``)."""
    from pydantic import ValidationError

    from edgeintel.caching.settings import ResultCacheSettings
    from edgeintel.errors import format_validation_error
    from edgeintel.examples import load_scenario_with
    from edgeintel.topology import LinkSpec

    if node_config is not None:
        try:
            raw = json.loads(node_config.read_text(encoding="utf-8"))
            rc = raw.get("result_cache")
            rcs = None if rc is None else ResultCacheSettings.model_validate(rc)
            hops = [LinkSpec.model_validate(h) for h in raw.get("backhaul", [])]
            upstream_name = str(raw.get("upstream", "cloud"))
        except (OSError, ValueError, AttributeError) as exc:
            if isinstance(exc, ValidationError):
                raise format_validation_error(exc, str(node_config)) from None
            raise ConfigError(
                f"{node_config}: expected JSON {{result_cache, backhaul, upstream}} ({exc})"
            ) from None
        return rcs, (hops, upstream_name)
    if scenario is None:
        if relays:
            raise ConfigError("--upstream needs --scenario or --node-config (the backhaul)")
        return None, ([], "cloud")
    sc = load_scenario_with(scenario, None)
    c = sc.settings.caching
    rcs = c.result_cache if c.enabled and c.result_cache.enabled else None
    if not relays:
        return rcs, ([], sc.cloud.name)
    if node not in [e.name for e in sc.edge_servers]:
        raise ConfigError(f"--node: expected an edge server of the scenario, got {node!r}")
    return rcs, (list(sc.topology.links_to_cloud(node)), sc.cloud.name)


def trace_clock(origin: float | None, origin_file: Path | None) -> Callable[[], float]:
    """Seconds since the link traces' origin: ``origin`` (Unix time), else the time read
    from ``origin_file`` once it exists (0 until then), else since now."""
    start: list[float] = []
    if origin is not None or origin_file is None:
        start.append(origin if origin is not None else time.time())

    def clock() -> float:
        if not start:
            assert origin_file is not None
            try:
                start.append(float(origin_file.read_text().strip()))
            except (OSError, ValueError):
                return 0.0
        return max(0.0, time.time() - start[0])

    return clock


def upstream_transport(
    upstream: str,
    hops: list[LinkSpec],
    emulate_link: bool,
    clock: Callable[[], float],
    time_scale: float,
    tls: Any = None,
) -> Transport:
    """HTTP to the cloud at ``upstream`` (host:port), shaped like the backhaul ``hops``
    (their traces read on ``clock``, scaled by ``time_scale``) when ``emulate_link``;
    over mutual TLS with this node's ``tls`` files when given."""
    from edgeintel.runtime.settings import parse_address
    from edgeintel.runtime.transport import HttpTransport, LinkEmulator, PathLink

    try:
        host, port = parse_address(upstream)
    except ValueError as exc:
        raise ConfigError(f"--upstream: {exc}") from None
    up: Transport = HttpTransport(f"{host}:{port}", tls=tls)
    if emulate_link:
        up = LinkEmulator(
            up, PathLink(tuple(hops)), seed=0, clock=clock, start=0.0, time_scale=time_scale
        )
    return up


# ---------------------------------------------------------------------- server processes


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the parent dies, even by SIGKILL, so no
    server outlives the run (elsewhere the caller's ``finally`` is the only guard)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


#: How a node's server is started: ``-P`` keeps the working folder off ``sys.path``,
#: so a ``numpy.py`` beside a scenario (run from its folder) is never imported;
#: PYTHONPATH (the package's own source) is kept, unlike with ``-I``.
SERVER_COMMAND = (sys.executable, "-P", "-m", "edgeintel")


def _last_line(log: Path | None) -> str:
    """The last non-empty line of a server's log (its own error), at most 300 characters."""
    if log is None or not log.is_file():
        return "(no log)"
    with open(log, "rb") as fh:
        fh.seek(max(0, log.stat().st_size - 8192))
        lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else "(empty log)"


def free_port() -> int:
    """A TCP port free on loopback now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One ``edgeintel serve`` child process (or a node started elsewhere: ``remote``).

    ``tls`` (a ``security.pki.TlsFiles``, the operator's): the node serves mutual TLS,
    so the readiness and statistics probes go over https presenting that certificate."""

    def __init__(
        self, name: str, host: str, port: int, remote: bool = False, tls: Any = None
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.remote = remote
        self.tls = tls
        self._verify: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.sink: Path | None = None
        self.log: Path | None = None

    def _get(self, path: str, timeout_s: float, token: str | None = None) -> Any:
        """GET ``path`` on the node (https with the operator's certificate under TLS)."""
        import httpx

        if self._verify is None:
            self._verify = True if self.tls is None else self.tls.client_context()
        scheme = "http" if self.tls is None else "https"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(
            f"{scheme}://{self.address}{path}",
            headers=headers,
            timeout=timeout_s,
            verify=self._verify,
        )

    @property
    def address(self) -> str:
        """host:port to reach the node at (loopback for a wildcard bind)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{host}:{self.port}"

    def start(self, repo: Path, folder: Path, tokens: Path, extra: list[str]) -> None:
        """Start ``edgeintel serve repo`` with its sink and log in ``folder``."""
        self.sink = folder / f"{self.name}.sink.db"
        self.log = folder / f"{self.name}.log"
        args = [
            *SERVER_COMMAND,
            "serve",
            str(repo),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--tokens",
            str(tokens),
            "--sink",
            str(self.sink),
            "--node",
            self.name,
            *extra,
        ]
        src = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=log, env=env, preexec_fn=_die_with_parent
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll ``/v2/health/ready`` until it answers 200; raise if the process exits."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EdgeIntelError(
                    f"server {self.name} exited with code {self.proc.returncode} before it was "
                    f"ready: {_last_line(self.log)} (log: {self.log})"
                )
            try:
                if self._get("/v2/health/ready", 1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if self.log is not None:
            where = f"; its last log line: {_last_line(self.log)} (log: {self.log})"
        else:  # a node started elsewhere (--only, settings.runtime.deploy.addresses)
            where = (
                f" at {self.address}, where nothing answers; start it there with `edgeintel "
                "serve` or list it in settings.runtime.deploy.only to start it here"
            )
            if self.tls is not None:
                where += (
                    " (deploy.tls is on: it must serve mutual TLS with a certificate from "
                    "the CA of settings.runtime.deploy.tls_ca)"
                )
        raise EdgeIntelError(f"server {self.name} not ready within {timeout_s:g} s{where}")

    def rollout(self, token: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a rollout on the node (``body``: ``RolloutSettings`` as JSON) or, without a
        body, its rollouts and devices (``GET /v1/rollout``); ``EdgeIntelError`` with the
        node's answer when it refuses."""
        import httpx

        if body is None:
            r = self._get("/v1/rollout", 10.0, token)
        else:
            if self._verify is None:
                self._verify = True if self.tls is None else self.tls.client_context()
            scheme = "http" if self.tls is None else "https"
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = httpx.post(f"{scheme}://{self.address}/v1/rollout", json=body,
                           headers=headers, timeout=60.0, verify=self._verify)  # fmt: skip
        if r.status_code != 200:
            raise EdgeIntelError(f"server {self.name}: /v1/rollout answered {r.status_code}: "
                                 f"{r.text[:200]}")  # fmt: skip
        return dict(r.json())

    def stats(self, token: str | None) -> dict[str, Any]:
        """The node's ``/v2/stats`` (operator token); {} when it does not answer."""
        import httpx

        try:
            r = self._get("/v2/stats", 5.0, token)
            return dict(r.json()) if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def stop(self) -> None:
        """SIGTERM (graceful drain), then SIGKILL after 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def exit_code(self) -> int | None:
        """The process's exit code once stopped (None: running or never started here)."""
        return None if self.proc is None else self.proc.returncode

    def delivered(self) -> dict[str, int]:
        """Results stored in the node's sink, per device."""
        if self.sink is None or not self.sink.exists():
            return {}
        db = sqlite3.connect(self.sink)
        try:
            return dict(db.execute("SELECT device, COUNT(*) FROM results GROUP BY device"))
        finally:
            db.close()


def drain_upstream(
    nodes: dict[str, ServerProcess], cloud: str, operator: str | None, timeout_s: float
) -> None:
    """Wait (at most ``timeout_s``) until the cloud holds every result the edge servers
    stored, i.e. their forwarders have caught up."""
    if cloud not in nodes or len(nodes) < 2:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        edge = sum(
            n.stats(operator).get("results_delivered", 0) for k, n in nodes.items() if k != cloud
        )
        if nodes[cloud].stats(operator).get("results_delivered", 0) >= edge:
            return
        time.sleep(0.2)
