"""Issue 19: bad command lines, corrupt run folders and records, user code that exits or hangs.

One table. Each case is a command line against a real run folder (``{R}``, a copy of
a tiny run made once), a scenario (``{S}``) and the test folder (``{D}``, also the
working folder), plus files it plants. Every case must end with exit code 2 and one
line containing the listed words, no traceback, and leave the test folder exactly
as it was: nothing written (inside or outside an output folder), nothing earlier
changed.

Run as real processes against main before this work (a6c3c9e), the 74 cases of this
corpus (the table plus ``cache-sim --capacity 1e19``) gave: 16 tracebacks, 11 broken
inputs accepted with exit 0, 8 earlier results overwritten, 6 writes outside the output
folder or folders left behind by a refused command, 1 hang (a factory that never
returns), 1 wrong exit (``serve --host 999.1.1.1``: ready, then exit 1), 11 unhelpful
messages, 20 as wanted. After: every case of the table exits 2 with one line and writes
nothing (``--capacity 1e19`` is now a valid capacity, clamped to the distinct keys).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edgeintel.cli import app

from .conftest import tiny_scenario_dict

FileMaker = str | bytes | Callable[[Path], Any]

LATIN1 = '{"run_id": "caf\xe9"}'.encode("latin-1")


@dataclass(frozen=True)
class Case:
    """A bad command line: ``argv`` with {S}/{R}/{D}, files planted first, message words."""

    id: str
    argv: list[str]
    words: tuple[str, ...]
    files: dict[str, FileMaker] = field(default_factory=dict)
    process: bool = False  # run as a real process (a server that starts would not return)


def _json(value: Any) -> str:
    return json.dumps(value)


def _edit_json(rel: str, edit: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Rewrite the JSON file ``rel`` (under the test folder) with ``edit(data)``."""

    def make(d: Path) -> None:
        p = d / rel
        data = json.loads(p.read_text())
        p.write_text(json.dumps(edit(data)))

    return make


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        node = data
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        return data

    return edit


def _drop(path: str) -> Callable[[Any], Any]:
    def edit(data: Any) -> Any:
        node = data
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
        return data

    return edit


def _repo(d: Path) -> None:
    """A model repository (for ``serve``) made from the run's model."""
    from edgeintel.runtime.repository import add_model

    add_model(d / "repo", "model", d / "R" / "model.onnx", 1)


def _rank2_onnx(d: Path) -> None:
    """A model taking (batch, 64) inputs: the digits data are (batch, 1, 8, 8)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, d / "flat.onnx")


def _npz(**shapes: tuple[int, ...]) -> Callable[[Path], None]:
    """``d.npz`` in the test folder holding zero arrays of ``shapes`` (labels as int)."""

    def make(d: Path) -> None:
        import numpy as np

        arrays = {
            k: np.zeros(v, np.int64 if k.startswith("y") else np.float32) for k, v in shapes.items()
        }
        np.savez(d / "d.npz", **arrays)  # type: ignore[arg-type]

    return make


HANG = "import time\ndef build(num_classes):\n    time.sleep(3600)\n"
EXITS = (
    "import sys, torch\n"
    "class M(torch.nn.Module):\n"
    "    def forward(self, x):\n"
    "        sys.exit(0)\n"
    "def build(num_classes):\n"
    "    return M()\n"
)


def _user_scenario(factory: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / "user.py").write_text(factory)
        raw = tiny_scenario_dict()
        raw["task"] = {"model": "user.py:build"}
        (d / "u.yaml").write_text(yaml.safe_dump(raw))

    return make


DEV = ["device", "{S}", "--device", "phone-0", "--onnx", "{R}/model.onnx", "--store", "{D}/o/s.db"]
R_RESULTS = "R/results.json"

CASES: list[Case] = [
    # ---- compress --from-run: corrupt run folders, output over the run
    Case(
        "compress-scenario-latin1",
        ["compress", "--from-run", "{R}"],
        ("scenario.json", "UTF-8"),
        {"R/scenario.json": LATIN1},
    ),
    Case(
        "compress-scenario-list",
        ["compress", "--from-run", "{R}"],
        ("scenario.json", "expected a JSON object"),
        {"R/scenario.json": "[1, 2]"},
    ),
    Case(
        "compress-model-json-latin1",
        ["compress", "--from-run", "{R}"],
        ("model.json", "UTF-8"),
        {"R/model.json": LATIN1},
    ),
    Case(
        "compress-model-json-list",
        ["compress", "--from-run", "{R}"],
        ("model.json", "expected a JSON object"),
        {"R/model.json": "[]"},
    ),
    Case(
        "compress-model-json-no-keys",
        ["compress", "--from-run", "{R}"],
        ("model.json", "required key is missing"),
        {"R/model.json": "{}"},
    ),
    Case(
        "compress-model-json-shape-str",
        ["compress", "--from-run", "{R}"],
        ("model.json", "input_shape"),
        {"x": _edit_json("R/model.json", _set("input_shape", "1x8x8"))},
    ),
    Case(
        "compress-data-split-str",
        ["compress", "--from-run", "{R}"],
        ("model.json", "data_split"),
        {"x": _edit_json("R/model.json", _set("extra.data_split", "x"))},
    ),
    Case(
        "compress-task-record-str",
        ["compress", "--from-run", "{R}"],
        ("model.json", "extra.task"),
        {"x": _edit_json("R/model.json", _set("extra.task", "anomaly"))},
    ),
    Case(
        "compress-task-record-unknown-kind",
        ["compress", "--from-run", "{R}"],
        ("model.json", "extra.task", "task kind"),
        {"x": _edit_json("R/model.json", _set("extra.task", {"kind": "nope"}))},
    ),
    Case(
        "compress-model-missing",
        ["compress", "--from-run", "{R}"],
        ("model.onnx",),
        {"x": lambda d: (d / "R" / "model.onnx").unlink()},
    ),
    Case(
        "compress-from-run-is-file",
        ["compress", "--from-run", "{R}/results.json"],
        ("--from-run", "run folder"),
    ),
    Case(
        "compress-out-is-the-run",
        ["compress", "--from-run", "{R}", "--out", "{R}"],
        ("--out", "--overwrite"),
    ),
    Case(
        "compress-out-earlier",
        ["compress", "--from-run", "{R}", "--out", "{D}/c"],
        ("--out", "--overwrite"),
        {"c/report.html": "<p>an earlier compression report</p>"},
    ),
    # ---- simulate --from-run / --out
    Case(
        "simulate-results-latin1",
        ["simulate", "{S}", "--from-run", "{R}", "--out", "{D}/o"],
        ("results.json", "UTF-8"),
        {R_RESULTS: LATIN1},
    ),
    Case(
        "simulate-results-list",
        ["simulate", "{S}", "--from-run", "{R}", "--out", "{D}/o"],
        ("results.json", "expected a JSON object"),
        {R_RESULTS: "[]"},
    ),
    Case(
        "simulate-per-device-list",
        ["simulate", "{S}", "--from-run", "{R}", "--out", "{D}/o"],
        ("results.json", "caching.filter.per_device"),
        {"x": _edit_json(R_RESULTS, _set("caching.filter.per_device", [1]))},
    ),
    Case(
        "simulate-inputs-str",
        ["simulate", "{S}", "--from-run", "{R}", "--out", "{D}/o"],
        ("results.json", "inputs", "integer"),
        {"x": _edit_json(R_RESULTS, _set("caching.filter.per_device.phone-0.inputs", "9"))},
    ),
    Case(
        "simulate-skipped-missing",
        ["simulate", "{S}", "--from-run", "{R}", "--out", "{D}/o"],
        ("results.json", "skipped", "missing"),
        {"x": _edit_json(R_RESULTS, _drop("caching.filter.per_device.phone-0.skipped"))},
    ),
    Case("simulate-out-is-a-run", ["simulate", "{S}", "--out", "{R}"], ("--out", "--overwrite")),
    # ---- report
    Case("report-latin1", ["report", "{R}"], ("results.json", "UTF-8"), {R_RESULTS: LATIN1}),
    Case(
        "report-list",
        ["report", "{R}"],
        ("results.json", "expected a JSON object"),
        {R_RESULTS: "[]"},
    ),
    Case("report-no-keys", ["report", "{R}"], ("results.json", "run_id"), {R_RESULTS: "{}"}),
    Case(
        "report-section-wrong-type",
        ["report", "{R}"],
        ("results.json", "caching"),
        {"x": _edit_json(R_RESULTS, _set("caching", [1, 2]))},
    ),
    Case(
        "report-data-wrong-type",
        ["report", "{R}"],
        ("results.json", "data"),
        {"x": _edit_json(R_RESULTS, _set("data", "digits"))},
    ),
    Case(
        "report-figures-index-list",
        ["report", "{R}"],
        ("index.json",),
        {"R/figures/index.json": "[1]"},
    ),
    Case(
        "report-figures-index-latin1",
        ["report", "{R}"],
        ("index.json", "UTF-8"),
        {"R/figures/index.json": LATIN1},
    ),
    Case("report-not-a-folder", ["report", "{D}/nope"], ("nope", "run folder")),
    Case(
        "report-screenshot-height",
        ["report", "{R}", "--screenshot", "{D}/o.png", "--height", "-5"],
        ("--height",),
    ),
    # ---- export-repo
    Case(
        "export-latin1",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("model.json", "UTF-8"),
        {"R/model.json": LATIN1},
    ),
    Case(
        "export-list",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("model.json", "expected a JSON object"),
        {"R/model.json": "[]"},
    ),
    Case(
        "export-missing-keys",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("model.json", "required key is missing"),
        {"R/model.json": '{"path": "model.onnx"}'},
    ),
    Case(
        "export-missing-model",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("model.json", "does not exist"),
        {"x": _edit_json("R/model.json", _set("path", "gone.onnx"))},
    ),
    Case(
        "export-model-is-folder",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("model.json", "path"),
        {"x": _edit_json("R/model.json", _set("path", "figures"))},
    ),
    Case(
        "export-labels-wrong",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("model.json", "labels"),
        {"x": _edit_json("R/model.json", _set("labels", 10))},
    ),
    Case(
        "export-sha-differs",
        ["export-repo", "{R}/model.json", "-o", "{D}/o"],
        ("sha256",),
        {"x": _edit_json("R/model.json", _set("sha256", "0" * 64))},
    ),
    Case(
        "export-out-is-file",
        ["export-repo", "{R}/model.json", "-o", "{R}/results.json"],
        ("--out",),
    ),
    Case(
        "export-out-earlier",
        ["export-repo", "{R}/model.json", "-o", "{D}/repo"],
        ("--out", "--overwrite"),
        {"x": _repo},
    ),
    Case(
        "export-name-traversal",
        ["export-repo", "{R}/model.json", "-o", "{D}/a/b/o", "--name", "../../x"],
        ("--name",),
    ),
    Case(
        "export-name-slash",
        ["export-repo", "{R}/model.json", "-o", "{D}/o", "--name", "a/b"],
        ("--name",),
    ),
    Case("export-record-is-folder", ["export-repo", "{R}", "-o", "{D}/o"], ("is a folder",)),
    # ---- export --runtime / parity (device runtimes)
    Case(
        "export-unknown-runtime",
        ["export", "{R}", "--runtime", "tflite", "--out", "{D}/o"],
        ("--runtime", "unknown runtime 'tflite'", "openvino"),
    ),
    Case(
        "export-litert-blocked",
        ["export", "{R}", "--runtime", "litert", "--out", "{D}/o"],
        ("LiteRT is blocked", "typing_extensions"),
    ),
    Case(
        "export-executorch-from-onnx",
        ["export", "{R}/model.onnx", "--runtime", "executorch", "--out", "{D}/o"],
        ("executorch", "PyTorch model", ".pt2"),
    ),
    Case(
        "export-int8-no-calibration",
        [
            "export",
            "{R}/model.onnx",
            "--runtime",
            "openvino",
            "--int8",
            "--data",
            "{D}/d.npz",
            "--out",
            "{D}/o",
        ],
        ("--int8", "x_calib"),
        {"d": _npz(x_test=(4, 1, 8, 8), y_test=(4,))},
    ),
    Case(
        "parity-data-no-labels",
        ["parity", "{R}", "--data", "{D}/d.npz"],
        ("--data", "y_test"),
        {"d": _npz(x_test=(4, 1, 8, 8))},
    ),
    Case(
        "parity-data-wrong-shape",
        ["parity", "{R}", "--data", "{D}/d.npz"],
        ("x_test", "(64,)", "(1, 8, 8)"),
        {"d": _npz(x_test=(4, 64), y_test=(4,))},
    ),
    Case("parity-not-a-model", ["parity", "{R}/model.json"], ("MODEL", "run folder", ".onnx")),
    Case("parity-runs", ["parity", "{R}", "--runs", "2"], ("--runs", ">= 5")),
    # ---- device
    Case(
        "device-runtime-artifact-format",
        [*DEV, "--runtime-artifact", "{R}/model.json"],
        ("--runtime-artifact", "runs onnxruntime", ".onnx"),
    ),
    Case("device-rate-nan", [*DEV, "--rate-hz", "nan"], ("--rate-hz",)),
    Case("device-rate-inf", [*DEV, "--rate-hz", "inf"], ("--rate-hz",)),
    Case("device-duration-negative", [*DEV, "--duration-s", "-5"], ("--duration-s",)),
    Case("device-duration-nan", [*DEV, "--duration-s", "nan"], ("--duration-s",)),
    Case("device-drain-inf", [*DEV, "--drain-timeout-s", "inf"], ("--drain-timeout-s",)),
    Case(
        "device-onnx-rank",
        [
            "device",
            "{S}",
            "--device",
            "phone-0",
            "--onnx",
            "{D}/flat.onnx",
            "--store",
            "{D}/o/s.db",
        ],
        ("flat.onnx", "input"),
        {"x": _rank2_onnx},
    ),
    Case(
        "device-onnx-missing",
        ["device", "{S}", "--device", "phone-0", "--onnx", "{D}/no.onnx", "--store", "{D}/o/s.db"],
        ("no.onnx",),
    ),
    Case(
        "device-unknown",
        [
            "device",
            "{S}",
            "--device",
            "toaster-9",
            "--onnx",
            "{R}/model.onnx",
            "--store",
            "{D}/o/s.db",
        ],
        ("toaster-9", "phone-0"),
    ),
    Case(
        "device-store-is-folder",
        ["device", "{S}", "--device", "phone-0", "--onnx", "{R}/model.onnx", "--store", "{R}"],
        ("--store",),
    ),
    Case(
        "device-filter-from-latin1",
        [*DEV, "--filter-from", "{R}/results.json"],
        ("results.json", "UTF-8"),
        {R_RESULTS: LATIN1},
    ),
    Case(
        "device-filter-from-list",
        [*DEV, "--filter-from", "{R}/results.json"],
        ("results.json", "expected a JSON object"),
        {R_RESULTS: "[]"},
    ),
    Case(
        "device-filter-threshold-str",
        [*DEV, "--filter-from", "{R}/results.json"],
        ("results.json", "threshold"),
        {"x": _edit_json(R_RESULTS, _set("caching.filter.per_device.phone-0.threshold", "high"))},
    ),
    Case("device-filter-from-folder", [*DEV, "--filter-from", "{R}"], ("--filter-from",)),
    # ---- serve
    Case(
        "serve-bad-host",
        ["serve", "{D}/repo", "--host", "999.1.1.1", "--port", "0"],
        ("--host", "999.1.1.1"),
        {"x": _repo},
        process=True,
    ),
    Case(
        "serve-tokens-latin1",
        ["serve", "{D}/repo", "--tokens", "{D}/t.json", "--port", "0"],
        ("t.json",),
        {"x": _repo, "t.json": LATIN1},
        process=True,
    ),
    Case(
        "serve-node-config-list",
        ["serve", "{D}/repo", "--node-config", "{D}/n.json", "--port", "0"],
        ("n.json",),
        {"x": _repo, "n.json": "[]"},
        process=True,
    ),
    Case(
        "serve-node-config-latin1",
        ["serve", "{D}/repo", "--node-config", "{D}/n.json", "--port", "0"],
        ("n.json",),
        {"x": _repo, "n.json": LATIN1},
        process=True,
    ),
    Case(
        "serve-trace-origin-nan",
        ["serve", "{D}/repo", "--trace-origin", "nan", "--port", "0"],
        ("--trace-origin",),
        {"x": _repo},
        process=True,
    ),
    # ---- plan
    Case(
        "plan-run-id-earlier",
        ["plan", "{S}", "--runs-dir", "{D}", "--run-id", "R"],
        ("--run-id", "--overwrite"),
    ),
    Case(
        "plan-model-latin1",
        ["plan", "{S}", "--runs-dir", "{D}/o", "--model", "{D}/m.onnx"],
        ("m.onnx",),
        {"m.onnx": LATIN1},
    ),
    Case(
        "plan-deadline-nan",
        ["plan", "{S}", "--runs-dir", "{D}/o", "--deadline-ms", "nan"],
        ("--deadline-ms",),
    ),
    Case(
        "plan-profile-strings",
        ["plan", "{D}/p.yaml", "--runs-dir", "{D}/o"],
        ("prof.json",),
        {"x": lambda d: _profile_scenario(d, ["a", "b"])},
    ),
    Case(
        "plan-profile-too-few",
        ["plan", "{D}/p.yaml", "--runs-dir", "{D}/o"],
        ("prof.json",),
        {"x": lambda d: _profile_scenario(d, [1.0])},
    ),
    Case(
        "plan-profile-list",
        ["plan", "{D}/p.yaml", "--runs-dir", "{D}/o"],
        ("prof.json",),
        {"x": lambda d: _profile_scenario(d, None)},
    ),
    # ---- cache-sim
    Case(
        "cache-sim-latin1",
        ["cache-sim", "{D}/t.txt", "--capacity", "4"],
        ("t.txt",),
        {"t.txt": b"a\n\xe9\n"},
    ),
    Case("cache-sim-folder", ["cache-sim", "{R}", "--capacity", "4"], ("R",)),
    Case(
        "cache-sim-capacity-0",
        ["cache-sim", "{D}/t.txt", "--capacity", "0"],
        ("--capacity",),
        {"t.txt": "a\nb\n"},
    ),
    # ---- outputs over earlier results (the other commands' cases are above)
    Case(
        "run-over-earlier-run",
        ["run", "{S}", "--runs-dir", "{D}", "--run-id", "R"],
        ("--run-id", "--overwrite"),
    ),
    Case(
        "train-over-earlier-run",
        ["train", "{S}", "--runs-dir", "{D}", "--run-id", "R"],
        ("--run-id", "--overwrite"),
    ),
    Case(
        "sweep-over-earlier-sweep",
        ["sweep", "{S}", "--grid", "{D}/g.yaml", "--out", "{D}/sw", "--workers", "1"],
        ("--out", "--overwrite"),
        {"g.yaml": "axes:\n  policy: [local]\nseeds: [0]\n", "sw/sweep.csv": "earlier\n"},
    ),
    Case(
        "sweep-grid-latin1",
        ["sweep", "{S}", "--grid", "{D}/g.yaml", "--out", "{D}/sw", "--workers", "1"],
        ("g.yaml",),
        {"g.yaml": LATIN1},
    ),
    Case(
        "examples-over-earlier-file",
        ["examples", "default", "--to", "{D}/s.yaml"],
        ("s.yaml", "--force"),
    ),
    # ---- user code at validate
    Case(
        "validate-factory-hangs",
        ["validate", "{D}/u.yaml"],
        ("user.py:build", "within"),
        {"x": _user_scenario(HANG)},
        process=True,
    ),
    Case(
        "validate-forward-exits",
        ["validate", "{D}/u.yaml"],
        ("user.py:build", "sys.exit"),
        {"x": _user_scenario(EXITS)},
    ),
    Case(
        "run-forward-exits",
        ["run", "{D}/u.yaml", "--runs-dir", "{D}/o"],
        ("user.py:build", "sys.exit"),
        {"x": _user_scenario(EXITS)},
    ),
]


def _profile_scenario(d: Path, node_ms: Any) -> None:
    """A scenario whose offloading.profile_file is broken (strings, too few nodes, a list)."""
    prof: Any = [1, 2]
    if node_ms is not None:
        prof = {
            "model_sha256": "0" * 64,
            "node_names": ["a", "b"],
            "node_ms": node_ms,
            "full_ms": 1.0,
            "raw_sum_ms": 1.0,
            "rounds": 3,
            "serialize_ms_per_mb": 1.0,
            "int8_ms_per_mb": 1.0,
        }
    (d / "prof.json").write_text(json.dumps(prof))
    raw = tiny_scenario_dict()
    raw["settings"]["offloading"] = {"profile_file": "prof.json"}
    (d / "p.yaml").write_text(yaml.safe_dump(raw))


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a digest of its content."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real tiny run (central training, export, caching) made once for the table."""
    d = tmp_path_factory.mktemp("goodrun")
    raw = tiny_scenario_dict()
    raw["settings"]["training"]["mode"] = "central"
    raw["settings"]["caching"] = {"enabled": True}
    (d / "s.yaml").write_text(yaml.safe_dump(raw))
    # run from its own folder with a relative --runs-dir, as a user does: the records
    # then hold paths relative to that working folder
    argv = ["run", "s.yaml", "--runs-dir", ".", "--run-id", "R", "-q"]
    for stage in ("data", "train", "export", "caching"):
        argv += ["--stage", stage]
    cwd = os.getcwd()
    os.chdir(d)
    try:
        res = CliRunner().invoke(app, argv)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    yield d / "R"


def materialize(d: Path, good: Path, files: dict[str, FileMaker]) -> None:
    """The test folder: the run copy R, the scenario s.yaml, then the case's files."""
    shutil.copytree(good, d / "R")
    (d / "s.yaml").write_text(yaml.safe_dump(tiny_scenario_dict()))
    for rel, make in files.items():
        p = d / rel
        if callable(make):
            make(d)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(make, bytes):
            p.write_bytes(make)
        else:
            p.write_text(make)


def argv_of(case: Case, d: Path) -> list[str]:
    return [
        a.replace("{S}", str(d / "s.yaml")).replace("{R}", str(d / "R")).replace("{D}", str(d))
        for a in case.argv
    ]


def _in_process(argv: list[str], cwd: Path) -> tuple[int | None, str]:
    """``python -P -m edgeintel ARGV`` in ``cwd`` (60 s at most: a hang is a failure), with
    the user-code time limit at 3 s."""
    code = (
        "import sys, edgeintel.models.zoo as z; z.USER_CODE_TIMEOUT_S = 3.0; "
        "from edgeintel.cli import main; sys.argv = ['edgeintel', *sys.argv[1:]]; main()"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        p = subprocess.run(
            [sys.executable, "-P", "-c", code, *argv],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, "timed out after 60 s"
    return p.returncode, (p.stdout + p.stderr).strip()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_command_is_one_line_exit_2_and_writes_nothing(
    case: Case, good_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeintel.models.zoo as zoo

    monkeypatch.setattr(zoo, "USER_CODE_TIMEOUT_S", 3.0)
    materialize(tmp_path, good_run, case.files)
    monkeypatch.chdir(tmp_path)  # a default output folder would land here too
    before = snapshot(tmp_path)
    if case.process:
        code, out = _in_process(argv_of(case, tmp_path), tmp_path)
    else:
        res = CliRunner().invoke(app, argv_of(case, tmp_path))
        code, out = res.exit_code, res.output.strip()
    assert code == 2, f"exit {code}: {out[-2000:]}"
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    # one error line, the last (`run` prints its header and preflight steps before it)
    assert len(errors) == 1 and lines[-1] == errors[0], out
    assert len(lines) == 1 or case.argv[0] in ("run", "train"), out
    for w in case.words:
        assert w in errors[0], f"{w!r} not in {errors[0]!r}"
    after = snapshot(tmp_path)
    written = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not written, f"written: {written}"
    assert not changed, f"changed or removed: {changed}"


#: options naming where a command writes a folder or a run, and the option that allows
#: writing over earlier results there
OUTPUT_OPTIONS = {"--out", "--runs-dir", "--run-id"}


def test_every_command_writing_a_folder_has_overwrite() -> None:
    """A command that writes into a folder refuses earlier results unless --overwrite (the
    table above shows the refusal for each); this fails when a new command forgets it."""
    import typer.main

    group = typer.main.get_command(app)
    ctx = click_context(group)
    missing = []
    for name in group.list_commands(ctx):  # type: ignore[attr-defined]
        cmd = group.get_command(ctx, name)  # type: ignore[attr-defined]
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if opts & OUTPUT_OPTIONS and not opts & {"--overwrite", "--force"}:
            missing.append(name)
    assert not missing, f"commands writing a folder without --overwrite: {missing}"
    covered = {c.argv[0] for c in CASES if "--overwrite" in c.words or "--force" in c.words}
    assert {"run", "train", "compress", "simulate", "sweep", "plan", "export-repo"} <= covered


def click_context(group: Any) -> Any:
    import click

    return click.Context(group)


def test_overwrite_replaces_an_earlier_simulation(tmp_path: Path) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(yaml.safe_dump(tiny_scenario_dict()))
    args = ["simulate", str(s), "--duration", "5", "--out", str(tmp_path / "o"), "-q"]
    assert CliRunner().invoke(app, args).exit_code == 0
    first = (tmp_path / "o" / "results.json").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert (tmp_path / "o" / "results.json").read_bytes() == first
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_export_repo_from_another_working_folder(
    good_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's model.json names runs/<id>/model.onnx relative to where the run was made; from
    any other folder export-repo finds the model beside the record (issue 24 item 9), and the
    repository it writes loads and verifies."""
    from edgeintel.runtime.repository import ModelRepository

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not Path(json.loads((good_run / "model.json").read_text())["path"]).is_absolute()
    res = CliRunner().invoke(app, ["export-repo", str(good_run / "model.json"), "-o", "repo"])
    assert res.exit_code == 0, res.output
    repo = ModelRepository(elsewhere / "repo")
    assert repo.versions("model") == ["1"] and not repo.refused


def test_device_accepts_a_shipped_scenario_name(good_run: Path, tmp_path: Path) -> None:
    """`edgeintel device default ...` resolves the bare name like `run` does (issue 24 item 9):
    the error is about the device name, not a missing file."""
    res = CliRunner().invoke(
        app,
        ["device", "default", "--device", "nope-0", "--onnx", str(good_run / "model.onnx"),
         "--store", str(tmp_path / "s.db")],
    )  # fmt: skip
    assert res.exit_code == 2 and "nope-0" in res.output
    assert "not found" not in res.output


def test_undelivered_results_come_with_a_hint() -> None:
    from types import SimpleNamespace

    from edgeintel.runtime.agent import DeviceAgent

    agent = SimpleNamespace(last_forward_error="server answered 404: b'... results (no sink)'")
    hint = DeviceAgent.delivery_hint(agent, 7)  # type: ignore[arg-type]
    assert hint is not None and "7 result(s) not delivered" in hint and "--sink" in hint
    assert DeviceAgent.delivery_hint(agent, 0) is None  # type: ignore[arg-type]
