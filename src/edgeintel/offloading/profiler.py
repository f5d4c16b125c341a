"""Per-layer compute profile of an ONNX model, measured with ONNX Runtime on this machine.

``profile_model`` runs the model at batch 1 on one intra-op thread with ONNX Runtime's
profiler and reads every node's kernel time. The profiling session uses the basic graph
optimisations (constant folding, Conv+BN/Add fusions that keep node names) so each
measured kernel maps to one node of the layer graph; nodes folded away cost 0. Rounds of
``runs_per_round`` inferences repeat until the two fastest rounds agree within
``tolerance``; the profile keeps the fastest round (a load spike on a shared machine
only ever slows a round down, so the least-disturbed window is the minimum, not the
median of all). Because the deployed sessions use all optimisations (layout transforms
that rename nodes), the per-node times are finally scaled by one factor so that they sum
to the whole model's latency with those sessions: its fastest run over several timing
windows. A device runs its model alone, so its cost is the undisturbed run; on a shared
machine every other process only delays a run, and a window's median can sit several
times above it (bench_offload measured medians 6-8x the fastest run at load 10-14 on 2
cores, and plans made from them missed the executed best in most cases); the fastest run
is the estimate that load does not move. ``spread`` (slowest / fastest window) says how
disturbed the measurement was; ``stable`` is False when even the two fastest windows
differ by more than ``STABLE_TOLERANCE``, and the plan says so.

A ``ModelProfile`` scales to a device or server by its compute speed (1.0 =
this machine); a profile measured on a real device is saved with that
device's ``reference_speed`` and loaded instead (``ModelProfile.load``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError, ModelError
from edgeintel.latency import measure_latency
from edgeintel.offloading.graph import LayerGraph, load_layer_graph
from edgeintel.offloading.transfer import serialize_tensors
from edgeintel.onnx_files import file_sha256, make_session

__all__ = ["STABLE_TOLERANCE", "ModelProfile", "measure_serialization", "profile_model"]

# a profile is called unstable when even its two fastest timing windows differ by more
STABLE_TOLERANCE = 0.10


@dataclass
class ModelProfile:
    """Per-node compute time (ms, at ``reference_speed``) and serialization throughput.

    ``node_ms[i]`` belongs to ``node_names[i]`` of the layer graph; ``full_ms`` is
    the whole model's fastest run with a deployed session (over several windows); ``rounds`` the
    profiling rounds until stable; ``serialize_ms_per_mb`` /
    ``int8_ms_per_mb`` the cost of turning 1 MB (10^6 bytes) of float32
    intermediate into a payload, plain or int8-quantized (at ``reference_speed``, like
    the nodes: a device ``compute_speed`` times as fast packs ``1 / compute_speed`` slower).
    ``spread``: slowest / fastest timing window while profiling; ``stable``: whether the
    fastest windows agreed within the tolerance (``None``: not recorded, e.g. an old file).
    """

    model_sha256: str
    node_names: list[str]
    node_ms: list[float]
    full_ms: float
    raw_sum_ms: float
    rounds: int
    serialize_ms_per_mb: float
    int8_ms_per_mb: float
    reference_speed: float = 1.0
    measured_on: str = "this machine"
    extra: dict[str, Any] = field(default_factory=dict)
    spread: float = 1.0
    stable: bool | None = None

    def on(self, compute_speed: float) -> np.ndarray:
        """Per-node ms on hardware of ``compute_speed`` (relative to this machine)."""
        if compute_speed <= 0:
            raise ConfigError(f"compute_speed must be > 0, got {compute_speed}")
        return np.asarray(self.node_ms, dtype=float) * (self.reference_speed / compute_speed)

    def serialize_on(self, compute_speed: float, int8: bool = False) -> float:
        """Milliseconds to serialize 1 MB of intermediate on hardware of ``compute_speed``."""
        if compute_speed <= 0:
            raise ConfigError(f"compute_speed must be > 0, got {compute_speed}")
        rate = self.int8_ms_per_mb if int8 else self.serialize_ms_per_mb
        return rate * self.reference_speed / compute_speed

    def stability_note(self) -> str | None:
        """One sentence when the profile was taken under load, else ``None``."""
        if self.stable is not False:
            return None
        return (
            f"the profile was unstable: its timing windows varied {self.spread:.1f}x (a "
            "load spike while profiling); the plan uses the fastest window; profile on an "
            "idle machine or give settings.offloading.profile_file"
        )

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(asdict(self), indent=1))
        return p

    @classmethod
    def load(cls, path: str | Path, graph: LayerGraph | None = None) -> ModelProfile:
        """Read a saved profile through the checked loader: every field of its type, one
        finite ``node_ms`` >= 0 per node name; with ``graph``, the same nodes as the model."""
        from edgeintel.records import read_json

        p = Path(path)
        rec = read_json(p, "a model profile (profile.json written by the planner)")
        names = rec.strings("node_names")
        node_ms = rec.get("node_ms", list, "a list of milliseconds, one per node")
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in node_ms
        ):
            raise rec.fail("node_ms", "a list of finite milliseconds >= 0, one per node", node_ms)
        if len(node_ms) != len(names):
            raise ConfigError(
                f"{p}: node_ms: expected one value per node ({len(names)} node_names), "
                f"got {len(node_ms)}"
            )
        if graph is not None and list(graph.names) != names:
            raise ConfigError(
                f"{p}: node_names: the profile's {len(names)} nodes do not match the "
                f"{len(graph.names)} nodes of {graph.path or 'the model'}"
            )
        return cls(
            model_sha256=rec.text("model_sha256"),
            node_names=names,
            node_ms=[float(v) for v in node_ms],
            full_ms=rec.number("full_ms", 0),
            raw_sum_ms=rec.number("raw_sum_ms", 0),
            rounds=rec.integer("rounds", 1),
            serialize_ms_per_mb=rec.number("serialize_ms_per_mb", 0),
            int8_ms_per_mb=rec.number("int8_ms_per_mb", 0),
            reference_speed=rec.number("reference_speed", 1e-9, default=1.0),
            measured_on=rec.text("measured_on", default="this machine"),
            extra=rec.get("extra", dict, "an object", default={}),
            spread=rec.number("spread", 1.0, default=1.0),
            stable=rec.get("stable", bool, "true or false", default=None),
        )


def _session(path: str, profile_prefix: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.enable_profiling = True
    opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def measure_serialization(int8: bool, mbytes: float = 1.0, repeats: int = 20) -> float:
    """Median ms to serialize ``mbytes`` MB of float32 activations (plain or int8)."""
    x = np.random.default_rng(0).standard_normal(int(mbytes * 1e6 / 4)).astype(np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        serialize_tensors({"x": x}, int8=int8)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)) / mbytes


def profile_model(
    path: str | Path,
    sample: np.ndarray | None = None,
    runs_per_round: int = 10,
    min_rounds: int = 3,
    max_rounds: int = 20,
    tolerance: float = 0.02,
    warmup: int = 5,
    graph: LayerGraph | None = None,
) -> ModelProfile:
    """Measure every node's compute time (ms) with ONNX Runtime at 1 thread until stable.

    ``sample``: one input with batch axis 1 (zeros of the model's input shape
    by default). Stops after ``min_rounds`` once the two fastest rounds' totals of
    per-node medians agree within ``tolerance`` (relative), or after ``max_rounds``;
    the fastest round is kept.
    """
    if runs_per_round < 1 or min_rounds < 1 or max_rounds < min_rounds:
        raise ConfigError("profiling needs runs_per_round >= 1 and 1 <= min_rounds <= max_rounds")
    path = str(path)
    graph = graph or load_layer_graph(path)
    x = (
        np.zeros((1, *graph.input_shape), dtype=np.float32)
        if sample is None
        else np.ascontiguousarray(sample, dtype=np.float32)
    )
    index = {n: i for i, n in enumerate(graph.names)}
    rounds_ms: list[np.ndarray] = []  # per round: every node's median kernel ms
    timed: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="edgeintel-prof-") as tmp:
        for r in range(1, max_rounds + 1):
            # ORT writes a profile once per session, so every round is a fresh session
            sess = _session(path, os.path.join(tmp, f"r{r}"))
            feed = {sess.get_inputs()[0].name: x}
            for _ in range(warmup + runs_per_round):
                sess.run(None, feed)
            events = json.loads(Path(sess.end_profiling()).read_text())
            seen: dict[int, int] = {}
            samples: dict[int, list[float]] = {}
            for e in events:
                if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                    continue
                i = index.get(e["name"][: -len("_kernel_time")])
                if i is None:
                    continue
                seen[i] = seen.get(i, 0) + 1
                if seen[i] > warmup:  # the warm-up runs come first in the trace
                    samples.setdefault(i, []).append(e["dur"] / 1000.0)
            per_node = np.zeros(graph.num_nodes)
            for i, v in samples.items():
                per_node[i] = float(np.median(v))
            timed.update(samples)
            rounds_ms.append(per_node)
            if r >= min_rounds and _fastest_agree([float(m.sum()) for m in rounds_ms], tolerance):
                break
    totals = [float(m.sum()) for m in rounds_ms]
    raw = rounds_ms[int(np.argmin(totals))]
    if raw.sum() <= 0:
        raise ModelError(f"{path}: ONNX Runtime's profile has no node timings")
    # the whole model timed by the project's one timing loop (offloading stands on inference)
    # in windows until the fastest runs of the two best windows agree; the fastest run
    # calibrates the profile (load only ever slows a run down)
    session = make_session(path)
    runs = max(20, runs_per_round * 2)

    def fastest_run(warm: int) -> float:
        return min(measure_latency(session, x, runs=runs, warmup=warm).samples_ms)

    windows = [fastest_run(3)]
    while len(windows) < 6 and not (len(windows) >= 3 and _fastest_agree(windows, tolerance)):
        windows.append(fastest_run(1))
    full_ms = min(windows)
    node_ms = raw * (full_ms / raw.sum())
    agree = max(tolerance, STABLE_TOLERANCE)
    stable = _fastest_agree(totals, agree) and _fastest_agree(windows, agree)
    spread = max(max(totals) / min(totals), max(windows) / min(windows))
    return ModelProfile(
        model_sha256=file_sha256(path),
        node_names=list(graph.names),
        node_ms=[float(v) for v in node_ms],
        full_ms=full_ms,
        raw_sum_ms=float(raw.sum()),
        rounds=len(rounds_ms),
        serialize_ms_per_mb=measure_serialization(False),
        int8_ms_per_mb=measure_serialization(True),
        extra={
            "runs": len(rounds_ms) * runs_per_round,
            "tolerance": tolerance,
            "timed_nodes": len(timed),
            "round_totals_ms": [round(t, 5) for t in totals],
            "whole_model_windows_ms": [round(w, 5) for w in windows],
        },
        spread=round(spread, 4),
        stable=stable,
    )


def _fastest_agree(values: list[float], tolerance: float) -> bool:
    """True when the two smallest of ``values`` differ by at most ``tolerance`` (fraction)."""
    if len(values) < 2:
        return False
    a, b = sorted(values)[:2]
    return b - a <= tolerance * a
