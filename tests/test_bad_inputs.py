"""Issue 8 §7: every bad input is one line naming the field or file, exit code 2, no traceback,
and it is caught before any training (``validate`` resolves it; ``run`` makes no run folder).

Two tables: bad scenario files (checked with ``edgeintel validate``, which must resolve
everything without training) and bad command-line invocations. Each row names the bad
input, how to make it, and a fragment the one-line message must contain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app

from .conftest import tiny_scenario_dict

Raw = dict[str, Any]
FileMaker = str | bytes | Callable[[Path], Any] | None  # None: a folder


def _set(path: str, value: Any) -> Callable[[Raw], None]:
    """Mutation: set a dotted path (list indices as numbers) in the scenario mapping."""

    def mut(raw: Raw) -> None:
        node: Any = raw
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mut


def _training(**kv: Any) -> Callable[[Raw], None]:
    return lambda raw: raw["settings"]["training"].update(kv)


def _npz(**arrays: Any) -> Callable[[Path], None]:
    return lambda p: np.savez(p, **arrays)


RNG = np.random.default_rng(0)
X60 = RNG.random((60, 1, 8, 8))
Y60 = np.arange(60) % 3
FACTORY_OK = (
    "import torch\n"
    "def build(input_shape, num_classes):\n"
    "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
)
CSV_HEAD = "a,b,label\n"

# id, mutation of the tiny scenario (or YAML text), files beside it, message fragment
SCENARIO_CASES: list[tuple[str, Callable[[Raw], None] | str, dict[str, FileMaker], str]] = [
    # ---- YAML and top level
    ("not-yaml", "a: [1, 2\n", {}, "not valid YAML"),
    ("top-level-list", "- 1\n- 2\n", {}, "expected a mapping"),
    ("empty-file", "", {}, "expected a mapping"),
    ("duplicate-key", "DUP", {}, "duplicate key 'name'"),
    ("unknown-field", _set("colour", "red"), {}, "colour: unknown field"),
    ("missing-task", lambda r: r.pop("task"), {}, "task: required field is missing"),
    # ---- non-finite numbers, in every kind of numeric field
    ("inf-bandwidth", _set("links.0.bandwidth_mbps", math.inf), {}, "links[0].bandwidth_mbps"),
    ("nan-rtt", _set("links.0.rtt_ms", math.nan), {}, "links[0].rtt_ms"),
    ("inf-speed", _set("device_profiles.phone.compute_speed", math.inf), {}, "compute_speed"),
    ("inf-memory", _set("device_profiles.phone.memory_mb", math.inf), {}, "memory_mb"),
    ("nan-battery", _set("device_profiles.phone.battery_j", math.nan), {}, "battery_j"),
    ("inf-lr", _training(lr=math.inf), {}, "settings.training.lr"),
    ("nan-lr", _training(lr=math.nan), {}, "settings.training.lr"),
    ("inf-client-lr", _training(client_lr=math.inf), {}, "client_lr"),
    ("inf-weight-decay", _training(weight_decay=math.inf), {}, "weight_decay"),
    ("inf-deadline", _training(deadline_s=math.inf), {}, "deadline_s"),
    ("inf-cloud-speed", _set("cloud.compute_speed", math.inf), {}, "cloud.compute_speed"),
    ("inf-alpha", _set("data.partition.alpha", math.inf), {}, "partition.alpha"),
    ("nan-test-fraction", _set("data.test_fraction", math.nan), {}, "test_fraction"),
    (
        "inf-trace-time",
        _set("links.0.trace", [{"t_s": math.inf, "bandwidth_mbps": 1}]),
        {},
        "trace",
    ),
    (
        "inf-budget",
        _set("settings.inference.compress.budget", {"max_latency_ms": math.inf}),
        {},
        "max_latency_ms",
    ),
    ("inf-dp-noise", _training(dp={"noise_multiplier": math.inf}), {}, "noise_multiplier"),
    ("huge-lr", _training(lr=1e39), {}, "settings.training.lr"),
    # ---- booleans and floats are not counts
    ("bool-count", _set("devices.0.count", True), {}, "devices[0].count"),
    ("float-count", _set("devices.0.count", 2.5), {}, "devices[0].count"),
    ("string-count", _set("devices.0.count", "3"), {}, "devices[0].count"),
    ("bool-epochs", _training(epochs=True), {}, "settings.training.epochs"),
    ("bool-seed", _set("seed", False), {}, "seed"),
    ("bool-width", _set("task.width", True), {}, "task.width"),
    ("huge-seed", _set("seed", 2**70), {}, "seed"),
    ("bool-rounds", _training(rounds=True), {}, "rounds"),
    ("bool-lr", _training(lr=True), {}, "settings.training.lr"),
    ("bool-in-shape", _set("data.shape", [True, 28]), {}, "data.shape: [0]: expected an integer"),
    ("float-in-shape", _set("data.shape", [1, 2.5]), {}, "data.shape: [1]: expected an integer"),
    # ---- huge but finite factors: bounded, never a diverged run reported "completed"
    ("huge-server-lr", _training(server_lr=1e30), {}, "settings.training.server_lr"),
    ("huge-client-lr", _training(client_lr=1e6), {}, "settings.training.client_lr"),
    ("huge-central-lr", _training(lr=100.0), {}, "settings.training.lr"),
    ("huge-mu", _training(mu=1e9), {}, "settings.training.mu"),
    ("huge-weight-decay", _training(weight_decay=50.0), {}, "settings.training.weight_decay"),
    ("huge-clip-lr", _training(dp={"clip_lr": 1e20}), {}, "settings.training.dp.clip_lr"),
    (
        "dp-adaptive-too-few-devices",  # clipped-count noise 4/20 < z/2: failed mid-training
        _training(mode="federated", dp={"noise_multiplier": 1.0, "clipping": "adaptive"}),
        {},
        "adaptive clipping with noise_multiplier 1 needs more than 10 devices",
    ),
    # ---- a relative checkpoint_dir resolves in the scenario's folder and stays inside it
    (
        "checkpoint-dir-escapes",
        _training(checkpoint_dir="../../elsewhere"),
        {},
        "outside the scenario's folder",
    ),
    # ---- names that become file names
    (
        "profile-traversal",
        lambda r: (
            r["device_profiles"].update({"../../x": r["device_profiles"]["phone"]}),
            r["devices"][0].update(profile="../../x"),
        ),
        {},
        "device_profiles",
    ),
    (
        "profile-slash",
        lambda r: r["device_profiles"].update({"a/b": r["device_profiles"]["phone"]}),
        {},
        "device_profiles",
    ),
    ("name-traversal", _set("name", "../x"), {}, "name"),
    # ---- topology
    ("dangling-link", _set("links.0.between", ["micro-1", "nowhere"]), {}, "dangling link"),
    ("unknown-profile", _set("devices.0.profile", "toaster"), {}, "unknown device profile"),
    ("unknown-attach", _set("devices.0.attach", "nowhere"), {}, "unknown node"),
    ("unreachable-edge", _set("links", []), {}, "no link path to the cloud"),
    # ---- trace files
    ("trace-is-folder", _set("links.0.trace_file", "tr"), {"tr": None}, "not a file"),
    (
        "trace-bad-number",
        _set("links.0.trace_file", "t.csv"),
        {"t.csv": "t_s,bandwidth_mbps\n0,abc\n"},
        "line 2",
    ),
    (
        "trace-not-text",
        _set("links.0.trace_file", "t.csv"),
        {"t.csv": b"\xff\xfe\x00"},
        "t.csv: not a UTF-8",
    ),
    (
        "trace-inf",
        _set("links.0.trace_file", "t.csv"),
        {"t.csv": "t_s,bandwidth_mbps\n0,inf\n"},
        "line 2",
    ),
    (
        "trace-nan",
        _set("links.0.trace_file", "t.csv"),
        {"t.csv": "t_s,bandwidth_mbps\n0,nan\n"},
        "line 2",
    ),
    ("trace-empty", _set("links.0.trace_file", "t.csv"), {"t.csv": ""}, "missing column 't_s'"),
    ("trace-missing", _set("links.0.trace_file", "nope.csv"), {}, "file not found"),
    (
        "trace-decreasing",
        _set("links.0.trace_file", "t.csv"),
        {"t.csv": "t_s,bandwidth_mbps\n5,1\n1,2\n"},
        "strictly increasing",
    ),
    # ---- datasets and models
    ("unknown-dataset", _set("data.dataset", "nope"), {}, "data.dataset: unknown dataset 'nope'"),
    ("unknown-family", _set("task.model", "resnet9000"), {}, "task.model: unknown model family"),
    ("wrong-family-rank", _set("task.model", "sensor_cnn"), {}, "task.model: input shape"),
    ("factory-missing-module", _set("task.model", "nomod:build"), {}, "cannot import module"),
    (
        "factory-missing-function",
        _set("task.model", "m:nope"),
        {"m.py": FACTORY_OK},
        "has no function 'nope'",
    ),
    (
        "factory-wrong-output",
        _set("task.model", "m:build"),
        {"m.py": FACTORY_OK.replace("Linear(64, num_classes)", "Linear(64, 3)")},
        "does not match 10 classes",
    ),
    (
        "factory-raises",
        _set("task.model", "m:build"),
        {"m.py": "def build(input_shape, num_classes):\n    raise RuntimeError('boom')\n"},
        "building the model failed: boom",
    ),
    (
        "factory-syntax-error",
        _set("task.model", "m:build"),
        {"m.py": "def build(:\n"},
        "SyntaxError",
    ),
    (
        "factory-exits",
        _set("task.model", "m:build"),
        {"m.py": "import sys\nsys.exit(3)\n"},
        "SystemExit",
    ),
    (
        "factory-not-module",
        _set("task.model", "m:build"),
        {"m.py": "def build(input_shape, num_classes):\n    return 3\n"},
        "must return a torch.nn.Module",
    ),
    ("factory-file-missing", _set("task.model", "lib/m.py:build"), {}, "model file not found"),
    ("factory-bad-ref", _set("task.model", "a b:c"), {}, "must look like"),
    # ---- user data files
    (
        "csv-nan-label",
        _set("data", {"path": "d.csv"}),
        {"d.csv": CSV_HEAD + "1,2,0\n3,4,\n5,6,1\n" * 20},
        "label(s) are missing",
    ),
    (
        "csv-fractional-label",
        _set("data", {"path": "d.csv"}),
        {"d.csv": CSV_HEAD + "1,2,0.5\n3,4,1\n" * 20},
        "fractional",
    ),
    (
        "csv-no-label-column",
        _set("data", {"path": "d.csv"}),
        {"d.csv": "a,y\n1,0\n" * 20},
        "label column 'label' not found",
    ),
    (
        "csv-text-feature",
        _set("data", {"path": "d.csv"}),
        {"d.csv": CSV_HEAD + "1,x,0\n2,y,1\n" * 20},
        "feature column 'b' is not numeric",
    ),
    (
        "csv-inf-feature",
        _set("data", {"path": "d.csv"}),
        {"d.csv": CSV_HEAD + "1,inf,0\n2,3,1\n" * 20},
        "non-finite",
    ),
    (
        "csv-bad-shape",
        _set("data", {"path": "d.csv", "shape": [1, 3, 3]}),
        {"d.csv": CSV_HEAD + "1,2,0\n2,3,1\n" * 20},
        "holds 9 values but each row has 2",
    ),
    ("csv-empty", _set("data", {"path": "d.csv"}), {"d.csv": ""}, "cannot read table"),
    (
        "csv-binary",
        _set("data", {"path": "d.csv"}),
        {"d.csv": b"\x00\xff\xfe\x01"},
        "cannot read table",
    ),
    (
        "csv-one-class",
        _set("data", {"path": "d.csv"}),
        {"d.csv": CSV_HEAD + "1,2,0\n" * 40},
        "at least 2 classes",
    ),
    (
        "csv-missing-group-column",
        _set("data", {"path": "d.csv", "group_column": "subj"}),
        {"d.csv": CSV_HEAD + "1,2,0\n2,3,1\n" * 20},
        "group column 'subj' not found",
    ),
    (
        "npz-one-hot",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=X60, y=np.eye(3)[Y60])},
        "one-hot",
    ),
    (
        "npz-nan-label",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=X60, y=np.where(Y60 == 0, np.nan, Y60))},
        "missing or not finite",
    ),
    (
        "npz-object-label",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=X60, y=np.array([1, "a"] * 30, dtype=object))},
        "Python objects",
    ),
    (
        "npz-1d-x",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=np.arange(60.0), y=Y60)},
        "got shape (60,)",
    ),
    (
        "npz-5d-x",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=RNG.random((60, 1, 2, 2, 2)), y=Y60)},
        "2 to 4 dimensions",
    ),
    (
        "npz-bad-shape",
        _set("data", {"path": "d.npz", "shape": [5, 5]}),
        {"d.npz": _npz(x=X60, y=Y60)},
        "holds 25 values but each sample",
    ),
    (
        "npz-length-mismatch",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=X60, y=Y60[:50])},
        "60 samples but 50 labels",
    ),
    (
        "npz-text-x",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=np.array(["a"] * 60), y=Y60)},
        "must be numeric",
    ),
    (
        "npz-nan-x",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=np.full((60, 1, 8, 8), np.nan), y=Y60)},
        "NaN or inf",
    ),
    (
        "npz-no-y",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=X60)},
        "needs arrays 'x' and 'y'",
    ),
    ("npz-garbage", _set("data", {"path": "d.npz"}), {"d.npz": b"garbage"}, "not a readable NPZ"),
    (
        "npz-empty",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=np.zeros((0, 1, 8, 8)), y=np.zeros(0))},
        "N >= 1 samples",
    ),
    (
        "npz-bad-groups",
        _set("data", {"path": "d.npz"}),
        {"d.npz": _npz(x=X60, y=Y60, groups=np.arange(5))},
        "one id per sample",
    ),
    (
        "image-empty-class",
        _set("data", {"path": "imgs"}),
        {"imgs/a/x.txt": "no image", "imgs/b": None},
        "class folder 'a' holds no images",
    ),
    (
        "image-corrupt",
        _set("data", {"path": "imgs"}),
        {"imgs/a/x.png": b"png?"},
        "cannot decode image",
    ),
    (
        "image-no-class-folders",
        _set("data", {"path": "imgs"}),
        {"imgs/x.png": b"png?"},
        "one sub-folder per class",
    ),
    (
        "data-unsupported-type",
        _set("data", {"path": "d.txt"}),
        {"d.txt": "x"},
        "unsupported data file type",
    ),
    ("data-missing-file", _set("data", {"path": "nope.csv"}), {}, "file not found"),
    ("data-both-sources", _set("data.path", "d.csv"), {"d.csv": CSV_HEAD}, "only one of"),
    # ---- partition and split
    (
        "natural-without-groups",
        _set("data.partition", {"kind": "natural"}),
        {},
        "needs subject or recording ids",
    ),
    ("more-devices-than-samples", _set("devices.0.count", 5000), {}, "cannot give each of 5000"),
    (
        "dirichlet-min-samples",
        _set("data.partition", {"kind": "dirichlet", "min_samples": 200}),
        {},
        "cannot give each of 4 devices 200 sample(s)",
    ),
    ("too-few-samples", _set("data.max_samples", 10), {}, "data"),
    # ---- edge training feasibility
    (
        "krum-too-few",
        _training(mode="federated", aggregation="krum", byzantine_fraction=0.25),
        {},
        "krum cannot aggregate the 4 updates",
    ),
    (
        "trimmed-too-few",
        _training(mode="federated", aggregation="trimmed_mean", byzantine_fraction=0.45),
        {},
        "trimmed_mean cannot aggregate",
    ),
    (
        "krum-hierarchical-edge",
        _training(mode="hierarchical", aggregation="multi_krum", byzantine_fraction=0.3),
        {},
        "at edge server 'micro-1'",
    ),
    (
        "clients-per-round-too-many",
        _training(mode="federated", clients_per_round=50),
        {},
        "clients_per_round: 50 is more than the 4 devices",
    ),
    (
        "dp-budget-infeasible",
        _training(mode="federated", dp={"noise_multiplier": 0.3, "target_epsilon": 0.01}),
        {},
        "settings.training.dp.target_epsilon=0.01 is already exceeded",
    ),
    (
        "secagg-with-krum",
        _training(secure_aggregation={}, aggregation="krum"),
        {},
        "secure_aggregation",
    ),
    (
        "finetune-too-many-layers",
        lambda r: (
            _set("data.server_fraction", 0.2)(r),
            _training(mode="solo", finetune_layers=99)(r),
        ),
        {},
        "finetune_layers must lie in [1, 7]",
    ),
    (
        "solo-finetune-without-server-set",  # the central model saw every device's data
        _training(mode="solo", finetune_layers=1),
        {},
        "set data.server_fraction > 0",
    ),
    (
        "solo-out-of-memory",
        lambda r: (
            r["settings"]["training"].update(mode="solo"),
            r["device_profiles"]["phone"].update(memory_mb=0.001),
        ),
        {},
        "cannot hold training",
    ),
    (
        "checkpoint-dir-is-file",
        _set("settings.training.checkpoint_dir", "{D}/ck"),
        {"ck": "x"},
        "checkpoint_dir",
    ),
    ("attack-without-fraction", _training(attack="sign_flip"), {}, "malicious_fraction"),
    ("norm-clip-without-bound", _training(aggregation="norm_clip"), {}, "clip_norm"),
    (
        "deadline-nobody-meets",
        _training(mode="federated", deadline_s=1e-9),
        {},
        "deadline_s: 1e-09 s is shorter than every device's round",
    ),
    (
        "float32-overflow",
        _training(mode="federated", dp={"noise_multiplier": 1e308}),
        {},
        "noise_multiplier: input should be less than or equal to 1000",
    ),
    ("settings-threads-zero", _set("settings.threads", 0), {}, "settings.threads"),
    (
        "sim-unknown-cache-policy",
        _set("settings.sim", {"cache_policy": "nope"}),
        {},
        "settings.sim.cache_policy: unknown cache policy 'nope'; expected one of: arc",
    ),
    (
        "sim-unknown-placement",
        _set("settings.sim", {"placement": "best"}),
        {},
        "settings.sim.placement: unknown placement policy 'best'",
    ),
    (
        "sim-negative-duration",
        _set("settings.sim", {"duration_s": -1}),
        {},
        "settings.sim.duration_s",
    ),
    ("sim-unknown-engine", _set("settings.sim", {"engine": "warp"}), {}, "settings.sim.engine"),
    ("settings-threads-bool", _set("settings.threads", True), {}, "settings.threads"),
    # ---- compression settings
    (
        "budget-unknown-profile",
        _set("settings.inference.compress.budgets", {"toaster": {"max_model_kb": 3}}),
        {},
        "unknown device profile 'toaster'",
    ),
    (
        "unknown-search-space",
        _set("settings.inference.compress.search_space", "huge"),
        {},
        "search_space",
    ),
    (
        "min-accuracy-above-1",
        _set("settings.inference.compress.budget", {"min_accuracy": 2}),
        {},
        "min_accuracy",
    ),
]


def _materialize(d: Path, files: dict[str, FileMaker]) -> None:
    for name, content in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        elif isinstance(content, str):
            p.write_text(content)
        else:
            content(p)


def _scenario_text(mut: Callable[[Raw], None] | str) -> str:
    if mut == "DUP":
        return "name: first\n" + yaml.safe_dump(tiny_scenario_dict())
    if isinstance(mut, str):
        return mut
    raw = tiny_scenario_dict()
    mut(raw)
    return yaml.safe_dump(raw)


def _assert_one_line_error(res: Any, fragment: str) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("mut", "files", "fragment"),
    [pytest.param(m, f, frag, id=i) for i, m, f, frag in SCENARIO_CASES],
)
def test_bad_scenario_is_one_line_exit_2(
    tmp_path: Path, mut: Callable[[Raw], None] | str, files: dict[str, FileMaker], fragment: str
) -> None:
    _materialize(tmp_path, files)
    f = tmp_path / "s.yaml"
    f.write_text(_scenario_text(mut).replace("{D}", str(tmp_path)))
    res = CliRunner().invoke(app, ["validate", str(f)])
    _assert_one_line_error(res, fragment)
    assert str(f) in res.output  # validate names the file it rejects


# id, arguments ({S}: a valid scenario, {D}: the test folder), files, message fragment
CLI_CASES: list[tuple[str, list[str], dict[str, FileMaker], str]] = [
    ("run-missing-scenario", ["run", "{D}/nope.yaml"], {}, "scenario file not found"),
    ("run-negative-seed", ["run", "{S}", "--seed", "-1"], {}, "--seed"),
    ("run-huge-seed", ["run", "{S}", "--seed", str(2**40)], {}, "--seed"),
    ("run-id-traversal", ["run", "{S}", "--run-id", "../../evil"], {}, "--run-id"),
    ("run-id-slash", ["run", "{S}", "--run-id", "a/b"], {}, "--run-id"),
    ("run-id-hidden", ["run", "{S}", "--run-id", ".x"], {}, "--run-id"),
    ("runs-dir-is-file", ["run", "{S}", "--runs-dir", "{D}/f"], {"f": "x"}, "--runs-dir"),
    ("unknown-stage", ["run", "{S}", "--stage", "bogus"], {}, "unknown pipeline stage 'bogus'"),
    ("train-unknown-mode", ["train", "{S}", "--mode", "bogus"], {}, "--mode"),
    ("train-zero-rounds", ["train", "{S}", "--rounds", "0"], {}, "--rounds"),
    (
        "compress-space",
        ["compress", "{S}", "--space", "huge"],
        {},
        "--space: expected one of quick, default, got 'huge'",
    ),
    (
        "compress-objective",
        ["compress", "{S}", "--objective", "speed"],
        {},
        "--objective: expected one of metric, accuracy, latency, size",
    ),
    (
        "compress-metric-drop",
        ["compress", "{S}", "--max-metric-drop", "-0.5"],
        {},
        "--max-metric-drop: expected a drop >= 0 in the metric's unit, got -0.5",
    ),
    (
        "compress-unknown-device",
        ["compress", "{S}", "--device", "toaster"],
        {},
        "--device 'toaster': unknown device profile; expected one of: phone",
    ),
    ("compress-device-traversal", ["compress", "{S}", "--device", "../x"], {}, "--device"),
    ("compress-negative-kb", ["compress", "{S}", "--max-kb", "-3"], {}, "--max-kb"),
    (
        "compress-nan-latency",
        ["compress", "{S}", "--max-latency-ms", "nan"],
        {},
        "--max-latency-ms: expected a finite number",
    ),
    ("compress-inf-kb", ["compress", "{S}", "--max-kb", "inf"], {}, "--max-kb"),
    ("compress-accuracy-2", ["compress", "{S}", "--min-accuracy", "2"], {}, "--min-accuracy"),
    ("compress-runs-0", ["compress", "{S}", "--runs", "0"], {}, "--runs"),
    ("compress-threads-0", ["compress", "{S}", "--threads", "0"], {}, "--threads"),
    ("compress-out-is-file", ["compress", "{S}", "--out", "{D}/f"], {"f": "x"}, "--out"),
    (
        "compress-missing-recipe",
        ["compress", "{S}", "--recipe", "{D}/nope.yaml"],
        {},
        "recipe file not found",
    ),
    (
        "compress-recipe-technique",
        ["compress", "{S}", "--recipe", "{D}/r.yaml"],
        {"r.yaml": "name: r\nsteps:\n  - {bogus: {}}\n"},
        "unknown compression technique 'bogus'",
    ),
    (
        "compress-recipe-option",
        ["compress", "{S}", "--recipe", "{D}/r.yaml"],
        {"r.yaml": "name: r\nsteps:\n  - {quantize_static: {calibration: x}}\n"},
        "quantize_static.calibration",
    ),
    (
        "compress-dataset-with-scenario",
        ["compress", "{S}", "--dataset", "digits"],
        {},
        "--dataset",
    ),
    (
        "compress-onnx-corrupt-no-record",
        ["compress", "{D}/m.onnx"],
        {"m.onnx": b"x"},
        "not a valid ONNX model",
    ),
    (
        "compress-onnx-unknown-dataset",
        ["compress", "{D}/m.onnx", "--dataset", "nope"],
        {"m.onnx": b"x"},
        "unknown dataset 'nope'",
    ),
    (
        "compress-onnx-corrupt",
        ["compress", "{D}/m.onnx", "--dataset", "digits"],
        {"m.onnx": b"x"},
        "not a valid ONNX model",
    ),
    (
        "compress-onnx-inf-speed",
        ["compress", "{D}/m.onnx", "--dataset", "digits", "--compute-speed", "inf"],
        {"m.onnx": b"x"},
        "--compute-speed",
    ),
    (
        "compress-onnx-two-devices",
        ["compress", "{D}/m.onnx", "--dataset", "digits", "--device", "a", "--device", "b"],
        {"m.onnx": b"x"},
        "--device",
    ),
    ("compress-other-file", ["compress", "{D}/m.txt"], {"m.txt": "x"}, "expected a scenario"),
    ("validate-missing", ["validate", "{D}/nope.yaml"], {}, "scenario file not found"),
    # edgeintel simulate (issue 13 §8): estimate before allocating, durations, policy names
    (
        "simulate-fleet-too-large",
        ["simulate", "{S}", "--devices", "9000000", "--out", "{D}/out"],
        {},
        "is available",
    ),
    (
        "simulate-negative-duration",
        ["simulate", "{S}", "--duration", "-5", "--out", "{D}/out"],
        {},
        "--duration: Input should be greater than 0",
    ),
    (
        "simulate-unknown-placement",
        ["simulate", "{S}", "--placement", "nah", "--out", "{D}/out"],
        {},
        "unknown placement policy 'nah'; expected one of: brute_force, greedy, milp",
    ),
    (
        "simulate-unknown-cache-policy",
        ["simulate", "{S}", "--cache-policy", "nope", "--out", "{D}/out"],
        {},
        "--cache-policy: unknown cache policy 'nope'; expected one of: arc, fifo",
    ),
    (
        "simulate-unknown-engine",
        ["simulate", "{S}", "--engine", "warp", "--out", "{D}/out"],
        {},
        "--engine",
    ),
    ("simulate-out-is-file", ["simulate", "{S}", "--out", "{D}/f"], {"f": "x"}, "--out"),
    # usage errors: one line too, naming the option
    ("unknown-command", ["bogus"], {}, "No such command 'bogus'"),
    ("run-unknown-option", ["run", "{S}", "--bogus"], {}, "No such option: --bogus"),
    ("run-seed-not-int", ["run", "{S}", "--seed", "1.5"], {}, "'--seed'"),
    (
        "compress-runs-not-int",
        ["compress", "{S}", "--runs", "abc"],
        {},
        "'abc' is not a valid integer",
    ),
    ("compress-kb-not-number", ["compress", "{S}", "--max-kb", "big"], {}, "'--max-kb'"),
    ("train-rounds-not-int", ["train", "{S}", "--rounds", "ten"], {}, "'--rounds'"),
    ("validate-no-file", ["validate"], {}, "Missing argument"),
]


@pytest.mark.parametrize(
    ("args", "files", "fragment"),
    [pytest.param(a, f, frag, id=i) for i, a, f, frag in CLI_CASES],
)
def test_bad_command_line_is_one_line_exit_2(
    tmp_path: Path, args: list[str], files: dict[str, FileMaker], fragment: str
) -> None:
    _materialize(tmp_path, files)
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump(tiny_scenario_dict()))
    argv = [a.replace("{S}", str(s)).replace("{D}", str(tmp_path)) for a in args]
    if argv[0] in ("run", "train") and "--runs-dir" not in argv:
        argv += ["--runs-dir", str(tmp_path / "runs")]
    if argv[0] == "compress" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    res = CliRunner().invoke(app, argv)
    _assert_one_line_error(res, fragment)
    # nothing was trained or written: no run folder, no compression output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
