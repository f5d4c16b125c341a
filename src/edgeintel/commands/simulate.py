"""What ``edgeintel simulate SCENARIO`` does apart from printing: run the fleet simulator and
write ``results.json`` + ``report.html`` (+ figures) in a run's format, with plots over
simulated time (latency percentiles, queues, battery, handovers, outages)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeintel.errors import ConfigError
from edgeintel.paths import check_new_out_dir
from edgeintel.pipeline.core import write_results_json
from edgeintel.pipeline.sections import sim_section  # noqa: F401  (registers the section renderer)
from edgeintel.report.environment import machine_info, package_versions
from edgeintel.report.figures import Figure, figure_from_matplotlib, save_figures
from edgeintel.report.topology import topology_json
from edgeintel.scenario import dump_scenario
from edgeintel.sim.settings import SimSettings
from edgeintel.sim.workload import Workload, workload_from_results

if TYPE_CHECKING:
    from edgeintel.scenario import Scenario
    from edgeintel.sim.result import SimResult

__all__ = [
    "SimulateOutcome",
    "scenario_workload",
    "sim_figures",
    "sim_settings_with",
    "simulate_command",
    "skip_from_run",
    "workload_from_model",
    "workload_from_run",
]


def workload_from_run(run_dir: Path) -> Workload:
    """The task's figures recorded by a run of the scenario (``sim.workload``)."""
    from edgeintel.records import open_run

    folder = open_run(run_dir, "--from-run")
    return workload_from_results(dict(folder.results().data), f"{run_dir / 'results.json'}")


def workload_from_model(sc: Scenario) -> Workload:
    """The scenario's own model (untrained: its cost does not depend on its weights) built as a
    run builds it, exported to ONNX and timed on this machine (compute speed 1.0); bytes from
    its float32 input and output. The filter's skip rate needs a run (``--from-run``)."""
    import tempfile

    import numpy as np

    from edgeintel.latency import measure_latency
    from edgeintel.models.export import export_onnx
    from edgeintel.onnx_files import make_session
    from edgeintel.pipeline.preflight import preflight

    rep = preflight(sc, stages=["data"])
    assert rep.prepared is not None
    shape = tuple(rep.sample_shape)
    with tempfile.TemporaryDirectory(prefix="simwl_") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(rep.prepared.model, shape, path, [])
        session = make_session(path)
        sample = np.zeros((1, *shape), dtype=np.float32)
        out = session.run(None, {session.get_inputs()[0].name: sample})[0]
        stats = measure_latency(session, sample, runs=50, warmup=5, windows=3)
    how = f"measured from {sc.task.model} on this machine"
    return Workload(
        task_ms=max(stats.p50_ms, 1e-4),
        input_bytes=int(sample.nbytes),
        result_bytes=max(1, int(np.asarray(out, dtype=np.float32).nbytes)),
        sources={
            "task_ms": f"{how} (p50 of single-sample calls, untrained weights)",
            "input_bytes": f"the model's float32 input {list(shape)}",
            "result_bytes": f"the model's float32 output {list(np.shape(out)[1:])}",
        },
    )


def scenario_workload(
    sc: Scenario, from_run: Path | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """The figures of ``sim.workload.FIELDS`` the scenario's ``settings.sim`` leaves unset, as
    ``SimSettings`` overrides, and where each came from: the run's (``from_run``), then the
    scenario's model measured here; the filter's skip rate is only known from a run."""
    from edgeintel.sim.workload import FIELDS

    given = sc.settings.sim or SimSettings()
    unset = [k for k in FIELDS if getattr(given, k) is None]
    work: dict[str, float] = {}
    notes: dict[str, str] = {}
    for source in ("run", "model"):
        missing = [k for k in unset if k not in work and k != "skip_probability"]
        if source == "run" and from_run is not None:
            wl = workload_from_run(from_run)
        elif source == "model" and missing:
            wl = workload_from_model(sc)
        else:
            continue
        got = {k: v for k, v in wl.values().items() if k in unset and k not in work}
        work |= got
        notes |= {k: wl.sources[k] for k in got}
    return work, notes


def skip_from_run(run_dir: Path) -> tuple[float, str]:
    """The redundancy filter's skip fraction measured by a run's ``caching`` stage (the real
    filter on the scenario's data, mean over devices weighted by their inputs) and a note."""
    from edgeintel.records import open_run

    results = open_run(run_dir, "--from-run").results()
    caching = results.sub("caching", default=None)
    filt = None if caching is None else caching.sub("filter", default=None)
    if filt is None or not filt.has("per_device"):
        raise ConfigError(
            f"--from-run {run_dir}: the run has no measured redundancy filter "
            "(results.caching.filter); run the caching stage first"
        )
    rows = [r for r in filt.subs("per_device").values() if r.has("inputs")]
    counts = [(r.integer("inputs", 0), r.integer("skipped", 0)) for r in rows]
    for r, (n, k) in zip(rows, counts, strict=True):
        if k > n:
            raise r.fail("skipped", f"an integer <= inputs ({n})", k)
    inputs = sum(n for n, _ in counts)
    skipped = sum(k for _, k in counts)
    if inputs == 0:
        raise ConfigError(
            f"--from-run {run_dir}: results.caching.filter.per_device records no inputs; "
            "run the caching stage first"
        )
    p = min(skipped / inputs, 0.999)
    return p, f"measured by the caching filter in {run_dir} ({skipped}/{inputs} inputs skipped)"


class SimulateOutcome:
    """The run folder, its results and the simulator's result."""

    def __init__(self, run_dir: Path, results: dict[str, Any], result: SimResult) -> None:
        self.run_dir = run_dir
        self.results = results
        self.result = result


def sim_settings_with(sc: Scenario, overrides: dict[str, Any]) -> SimSettings:
    """``settings.sim`` (or the defaults) with command-line overrides, validated; a bad value
    is one line naming its option."""
    from pydantic import ValidationError

    base = sc.settings.sim.model_dump(exclude_unset=True) if sc.settings.sim else {}
    over = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SimSettings.model_validate({**base, **over})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings.sim"
        msg = str(err["msg"]).removeprefix("Value error, ")
        opt = {"duration_s": "duration"}.get(field, field).replace("_", "-")
        where = f"--{opt}" if field in over else f"settings.sim.{field}"
        raise ConfigError(f"{where}: {msg}") from None


def simulate_command(
    sc: Scenario,
    settings: SimSettings,
    out_dir: Path | None = None,
    runs_dir: Path = Path("runs"),
    progress: Callable[[float], None] | None = None,
    scenario_file: str | None = None,
    notes: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> SimulateOutcome:
    """Simulate and write the run folder (``out_dir``, default ``runs/<time>-<name>-sim``);
    a folder holding an earlier run is refused unless ``overwrite``."""
    from edgeintel.report.html import write_report
    from edgeintel.sim.api import simulate
    from edgeintel.sim.model import build_model

    if out_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out_dir = Path(runs_dir) / f"{stamp}-{sc.name}-sim"
    out_dir = check_new_out_dir(out_dir, "--out", overwrite)
    model = build_model(sc, settings)  # memory estimate and bad input before the folder exists
    del model
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = simulate(sc, settings, progress=progress)
    section = res.to_json()
    if notes:
        section["notes"] = notes
        for k, v in section["workload"].items():  # where a measured figure came from
            if k in notes and v["source"].startswith("set in"):
                v["source"] = notes[k]
    fleet = section["fleet"]
    scaled = sc.model_copy(
        update={"devices": [g.model_copy(update={"count": fleet[g.name]}) for g in sc.devices]}
    )
    results: dict[str, Any] = {
        "run_id": out_dir.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "completed",
        "error": None,
        "scenario": {
            "name": sc.name,
            "description": sc.description,
            "seed": sc.seed,
            "file": scenario_file,
            "devices": res.model.num_devices,
            "edge_servers": len(sc.edge_servers),
            "topology": topology_json(scaled),  # the simulated fleet, not the file's counts
            "settings": dump_scenario(sc).get("settings", {}),
        },
        "machine": machine_info(),
        "versions": package_versions(("numpy", "simpy")),
        "stages": ["simulate"],
        "timings_s": {"simulate": round(time.perf_counter() - t0, 3)},
        "simulation": section,
    }
    figures = sim_figures(section)
    write_results_json(out_dir / "results.json", results)
    save_figures(out_dir, figures)
    write_report(out_dir / "report.html", results, figures)
    return SimulateOutcome(out_dir, results, res)


def sim_figures(section: dict[str, Any]) -> list[Figure]:
    """Plots over simulated time: latency percentiles, queues, battery, handovers, outages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ser = section["series"]
    lat = ser["latency"]
    t = ser["t_s"]
    figs = []
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for q in ("p50", "p95", "p99"):
        ax.plot(
            lat["t_s"], [float("nan") if v is None else v * 1e3 for v in lat[f"{q}_s"]], label=q
        )
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.legend()
    figs.append(
        figure_from_matplotlib(
            "simulation", "Latency percentiles over time", fig, "tasks binned by arrival time"
        )
    )
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.plot(t, ser["edge_queue"], label="waiting at edge servers")
    ax.plot(t, ser["cloud_queue"], label="waiting at the cloud")
    ax.plot(t, ser["busy_workers"], label="busy workers", linestyle="--")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("requests")
    ax.legend()
    figs.append(figure_from_matplotlib("simulation", "Server queues", fig))
    fig, ax1 = plt.subplots(figsize=(6.4, 3.2))
    ax1.plot(t, ser["battery_fraction"], color="tab:green", label="mean battery left")
    ax1.set_ylabel("battery fraction")
    ax1.set_xlabel("simulated time (s)")
    ax2 = ax1.twinx()
    ax2.plot(t, ser["handovers"], color="tab:purple", label="handovers (cumulative)")
    ax2.plot(
        t, [f * 100 for f in ser["outage_fraction"]], color="tab:red", label="devices in outage (%)"
    )
    lines = ax1.get_lines() + ax2.get_lines()
    ax1.legend(lines, [str(x.get_label()) for x in lines], fontsize=8)
    figs.append(figure_from_matplotlib("simulation", "Battery, handovers and outages", fig))
    return figs
