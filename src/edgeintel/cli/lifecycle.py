"""``edgeintel rollout`` and ``edgeintel versions``: a running fleet's model versions.

Both talk to a serving node (``edgeintel serve``) with an operator's token; the rollout
itself runs on the node (``runtime.rollout``), so these commands only start it, follow
it and print what it did.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgeintel.cli.common import console, guard
from edgeintel.cli.runtime import _tls_files
from edgeintel.errors import ConfigError, TransportError, format_error

__all__ = ["rollout_cmd", "versions_cmd"]

AddressArg = Annotated[
    str, typer.Argument(help="host:port of the serving node (edgeintel serve) of the fleet.")
]
TokenOpt = Annotated[
    str | None, typer.Option(help="An operator's bearer token (the server's --tokens file).")
]
CertOpt = Annotated[
    Path | None, typer.Option(help="The operator's certificate (PEM): mutual TLS on.")
]
KeyOpt = Annotated[Path | None, typer.Option(help="Its private key (PEM).")]
CaOpt = Annotated[Path | None, typer.Option(help="The CA certificate it trusts (PEM).")]


def _call(address: str, tls: Any, token: str | None, method: str, body: Any) -> Any:
    """One request to the node's ``/v1/rollout``; its error as one line."""
    from edgeintel.runtime.settings import parse_address
    from edgeintel.runtime.transport import HttpTransport, Request

    try:
        parse_address(address)
    except ValueError as exc:
        raise ConfigError(f"ADDRESS: {exc}") from None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = HttpTransport(address, tls=tls)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        resp = client.send(Request(method, "/v1/rollout", data, headers, timeout_s=60.0))
    except TransportError as exc:
        raise ConfigError(f"{address}: cannot reach the node ({exc})") from None
    finally:
        client.close()
    try:
        out = json.loads(resp.body)
    except ValueError:
        out = {"error": resp.body[:200].decode("utf-8", "replace")}
    if resp.status != 200:
        raise ConfigError(f"{address}: {out.get('error', resp.status)}")
    return out


def _stages(text: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--stages: expected shares like 0.1,0.5,1; got {text!r}") from None


def _print_timeline(r: dict[str, Any]) -> None:
    for e in r["timeline"]:
        if e["event"] == "look":
            figs = ", ".join(
                f"{g['guard']} {'TRIPPED' if g['tripped'] else 'ok'}" for g in e["guards"]
            )
            n = (e.get("candidate") or {}).get("n"), (e.get("stable") or {}).get("n")
            line = f"look {e['look']} on {n[0]} new / {n[1]} stable results: {figs}"
        elif e["event"] == "rollback":
            line = f"[bold red]rolled back[/]: {escape(e['reason'])}"
        elif e["event"] == "promote":
            line = "[green]promoted[/] to every device"
        else:
            line = f"stage {e['stage']}: {e['share']:.0%} of devices"
        console.print(f"  {e['t_s']:8.1f} s  {line}", highlight=False)


def rollout_cmd(
    address: AddressArg,
    model: Annotated[str, typer.Option(help="Model name on the node, e.g. digits.")],
    version: Annotated[
        str, typer.Option(help="The new version: a folder of the node's repository, e.g. 2.")
    ],
    stages: Annotated[
        str, typer.Option(help="Shares of devices per stage, the first is the canary.")
    ] = "0.1,0.5,1",
    min_results: Annotated[
        int, typer.Option(min=1, help="Results of each version before a look at the guards.")
    ] = 50,
    looks: Annotated[int, typer.Option(min=1, help="Looks per stage (alpha split over them).")] = 2,
    alpha: Annotated[float, typer.Option(help="One-sided level of a stage's guard tests.")] = 0.05,
    max_error_rate_increase: Annotated[
        float, typer.Option(help="Allowed rise of the error rate (absolute, 0.01 = 1 point).")
    ] = 0.01,
    max_metric_drop: Annotated[
        float, typer.Option(help="Allowed drop of the share correct on labelled results.")
    ] = 0.02,
    max_latency_p95_ratio: Annotated[
        float, typer.Option(help="Allowed factor on the stable version's p95 latency.")
    ] = 1.5,
    stage_timeout_s: Annotated[
        float, typer.Option(help="A stage without its looks by then is rolled back.")
    ] = 300.0,
    wait: Annotated[
        bool, typer.Option(help="Follow the rollout until it is promoted or rolled back.")
    ] = True,
    token: TokenOpt = None,
    tls_cert: CertOpt = None,
    tls_key: KeyOpt = None,
    tls_ca: CaOpt = None,
) -> None:
    """Roll a new model version out to a running fleet: a canary share of devices first,
    then the next stages, rolled back at once when a guard trips (error rate, share
    correct, latency p95 worse than the stable version's beyond the margin, at level
    alpha). Exit 0 when promoted, 1 when rolled back."""
    from pydantic import ValidationError

    from edgeintel.runtime.rollout import RolloutSettings

    with guard():
        tls = _tls_files(tls_cert, tls_key, tls_ca, None)
        try:
            cfg = RolloutSettings(
                model=model,
                version=version,
                stages=tuple(_stages(stages)),
                min_results=min_results,
                looks=looks,
                alpha=alpha,
                max_error_rate_increase=max_error_rate_increase,
                max_metric_drop=max_metric_drop,
                max_latency_p95_ratio=max_latency_p95_ratio,
                stage_timeout_s=stage_timeout_s,
            )
        except ValidationError as exc:
            e = exc.errors()[0]
            opt = "--" + str(e["loc"][0]).replace("_", "-")
            raise ConfigError(f"{opt}: {format_error(dict(e)).split(': ', 1)[-1]}") from None
        r = _call(address, tls, token, "POST", cfg.model_dump(mode="json"))
        console.print(
            f"rollout {escape(r['id'])} started: version {r['candidate']} over {r['stable']}",
            highlight=False,
        )
        while wait and r["state"] == "running":
            time.sleep(1.0)
            r = _call(address, tls, token, "GET", None)["rollouts"][model]
        _print_timeline(r)
        if r["state"] == "rolled_back":
            raise typer.Exit(1)


def versions_cmd(
    address: AddressArg,
    token: TokenOpt = None,
    tls_cert: CertOpt = None,
    tls_key: KeyOpt = None,
    tls_ca: CaOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the node's JSON.")] = False,
) -> None:
    """Show the fleet's model versions: each rollout (stable, new, state, share of devices),
    the version each device last reported (with versions it refused), and drift per device
    group (devices drifting now, alarms raised)."""
    with guard():
        out = _call(address, _tls_files(tls_cert, tls_key, tls_ca, None), token, "GET", None)
        if as_json:
            console.print_json(json.dumps(out))
            return
        t = Table("model", "stable", "new", "state", "share", "reason")
        for m, r in out["rollouts"].items():
            t.add_row(m, r["stable"], r["candidate"], r["state"], f"{r['share']:.0%}", r["reason"])
        console.print(t if out["rollouts"] else "no rollout on this node")
        d = Table("device", "versions", "refused")
        for name, dv in out["devices"].items():
            vs = ", ".join(f"{m} {v}" for m, v in dv["versions"].items())
            d.add_row(name, vs, ", ".join(dv["refused"]) or "")
        if out["devices"]:
            console.print(d)
        groups = (out.get("drift") or {}).get("groups") or {}
        if groups:
            g = Table("group", "devices", "drifting now", "alarms", "alarmed devices")
            for name, f in groups.items():
                g.add_row(name, str(f["devices"]), str(f["drifting"]), str(f["alarms"]),
                          ", ".join(f["alarmed"][:8]))  # fmt: skip
            console.print(g)
