"""Issue 19 (commands and files): the checked loader of run folders and records, the model
repository export (no traversal, nothing half-written, escaped config.pbtxt), the time
limit on user model code and the isolated path of deployed servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeintel.errors import DataError, EdgeIntelError, ModelError
from edgeintel.models.export import export_onnx
from edgeintel.records import Record, load_artifact, open_run, read_json, read_json_list
from edgeintel.runtime.repository import TensorSpec, export_repository, pbtxt_string, triton_config


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("art")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    export_onnx(net, (1, 2, 2), d / "m.onnx", ["a", "b", "c"])
    return d


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"a": "caf\xe9"}', "not UTF-8 text (byte 0xe9"),
        (b"[1, 2]", "expected a JSON object (a thing), got a list"),
        (b'{"a": ', "not valid JSON (line 1"),
        (b"[" * 100000 + b"]" * 100000, "x.json"),
    ],
)
def test_read_json_names_the_file_and_what_is_expected(
    tmp_path: Path, content: bytes, words: str
) -> None:
    p = tmp_path / "x.json"
    p.write_bytes(content)
    with pytest.raises(DataError, match=r"x.json") as exc:
        read_json(p, "a thing")
    assert words in str(exc.value)


def test_read_text_refuses_a_folder_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is a folder; expected a thing"):
        read_json(tmp_path, "a thing")
    with pytest.raises(DataError, match=r"file not found"):
        read_json(tmp_path / "nope.json", "a thing")


def test_record_accessors_name_the_key_path() -> None:
    rec = Record({"a": {"b": {"n": "9", "ok": 3, "flag": True}}}, Path("r.json"))
    b = rec.sub("a").sub("b")
    assert b.integer("ok", 0) == 3
    with pytest.raises(DataError, match=r"r.json: a.b.n: expected an integer, got a string '9'"):
        b.integer("n")
    with pytest.raises(DataError, match=r"a.b.flag: expected a finite number"):
        b.number("flag")  # true is not a number here
    with pytest.raises(DataError, match=r"a.b.gone: required key is missing"):
        b.text("gone")
    assert b.text("gone", default="x") == "x"
    with pytest.raises(DataError, match=r"a.b.ok: expected a finite number in \[5"):
        b.number("ok", 5)


def test_read_json_list_checks_each_item(tmp_path: Path) -> None:
    p = tmp_path / "i.json"
    p.write_text('[{"a": 1}, 2]')
    with pytest.raises(DataError, match=r"i.json: \[1\]: expected an object, got an integer"):
        read_json_list(p, "an index")


def test_results_top_level_is_checked(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "r", "caching": [1]}))
    with pytest.raises(DataError, match=r"results.json: caching: expected an object"):
        open_run(tmp_path).results()
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "r", "timings_s": {"a": -1}}))
    with pytest.raises(DataError, match=r"timings_s.a"):
        open_run(tmp_path).results()
    with pytest.raises(DataError, match=r"expected a run folder"):
        open_run(tmp_path / "results.json", "--from-run")


def test_artifact_path_resolves_against_the_record_folder(
    artifact_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record written as runs/<id>/model.onnx from another working folder names the file
    beside it (issue 24 item 9)."""
    rec = json.loads((artifact_dir / "m.json").read_text())
    rec["path"] = "runs/elsewhere/m.onnx"
    (artifact_dir / "m2.json").write_text(json.dumps(rec))
    monkeypatch.chdir(tmp_path)
    art = load_artifact(artifact_dir / "m2.json")
    assert Path(art.path).resolve() == (artifact_dir / "m.onnx").resolve()
    rec["path"] = "nope.onnx"
    (artifact_dir / "m3.json").write_text(json.dumps(rec))
    with pytest.raises(DataError, match=r"m3.json: path: the model file .*nope.onnx does not"):
        load_artifact(artifact_dir / "m3.json")
    rec["path"], rec["input_shape"] = "m.onnx", [1, "2", 2]
    (artifact_dir / "m4.json").write_text(json.dumps(rec))
    with pytest.raises(DataError, match=r"m4.json: input_shape: expected a list of integers"):
        load_artifact(artifact_dir / "m4.json")


def _specs(name: str) -> list[TensorSpec]:
    return [TensorSpec(name, "FP32", (-1, 3))]


@pytest.mark.parametrize("name", ['in"put', "a\\b", "tab\there", "new\nline", "ünï", "x'y"])
def test_config_pbtxt_escapes_names(name: str) -> None:
    """Any tensor or model name gives a config that protobuf's parser reads back exactly
    (Triton's own ModelConfig message)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = triton_config(name, _specs(name), _specs("out"), max_batch_size=8)
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert cfg.name == name and cfg.input[0].name == name and cfg.output[0].name == "out"
    assert list(cfg.input[0].dims) == [3]


def test_pbtxt_string_escapes_quote_and_backslash() -> None:
    assert pbtxt_string('a"b\\c') == '"a\\"b\\\\c"'


def test_export_refuses_unsafe_names_and_leaves_nothing(artifact_dir: Path, tmp_path: Path) -> None:
    art = load_artifact(artifact_dir / "m.json")
    out = tmp_path / "a" / "b" / "repo"
    for name in ("../../x", "a/b", "..", ".hidden", ""):
        with pytest.raises(EdgeIntelError, match=r"--name"):
            export_repository({name: art}, out)
    assert not (tmp_path / "a").exists()


def test_export_refuses_an_earlier_repository_unless_overwrite(
    artifact_dir: Path, tmp_path: Path
) -> None:
    art = load_artifact(artifact_dir / "m.json")
    root = export_repository({"m": art}, tmp_path / "repo")
    manifest = (root / "m" / "edgeintel.json").read_bytes()
    with pytest.raises(ModelError, match=r"--overwrite"):
        export_repository({"m": art}, root)
    assert (root / "m" / "edgeintel.json").read_bytes() == manifest
    export_repository({"m": [art, art]}, root, overwrite=True)
    assert sorted(p.name for p in (root / "m").iterdir() if p.is_dir()) == ["1", "2"]
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging folder left


def test_failed_export_leaves_no_repository(artifact_dir: Path, tmp_path: Path) -> None:
    art = load_artifact(artifact_dir / "m.json")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    from dataclasses import replace

    from edgeintel.onnx_files import file_sha256

    broken = replace(art, path=str(bad), sha256=file_sha256(bad))
    with pytest.raises(ModelError, match=r"bad.onnx"):
        export_repository({"good": art, "broken": broken}, tmp_path / "repo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_user_factory_that_never_returns_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeintel.models.zoo as zoo

    (tmp_path / "slow.py").write_text("import time\ndef build(num_classes):\n    time.sleep(60)\n")
    monkeypatch.setattr(zoo, "USER_CODE_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=r"slow.py:build.*within 0.5 s"):
        zoo.build_model(f"{tmp_path}/slow.py:build", (4,), 2)
    assert time.monotonic() - t0 < 5


def test_forward_calling_exit_is_a_model_error(tmp_path: Path) -> None:
    from edgeintel.models.zoo import build_model

    (tmp_path / "ex.py").write_text(
        "import sys, torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
        "        sys.exit(0)\ndef build(num_classes):\n    return M()\n"
    )
    with pytest.raises(ModelError, match=r"ex.py:build.*called sys.exit\(0\)"):
        build_model(f"{tmp_path}/ex.py:build", (4,), 2)


def test_deployed_servers_never_import_a_module_beside_the_scenario(tmp_path: Path) -> None:
    """Servers start as SERVER_COMMAND from the working folder: a numpy.py there must not be
    imported (-P), while PYTHONPATH (the package source) still is."""
    from edgeintel.runtime.nodes import SERVER_COMMAND

    (tmp_path / "numpy.py").write_text("raise SystemExit('planted numpy imported')\n")
    probe = [*SERVER_COMMAND[:-2], "-c", "import numpy, edgeintel; print(numpy.__file__)"]
    res = subprocess.run(probe, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert str(tmp_path) not in res.stdout
    # `edgeintel cache-sim` imports numpy: started like a server, the real one is used
    (tmp_path / "t.txt").write_text("a\nb\na\n")
    cmd = [*SERVER_COMMAND, "cache-sim", "t.txt", "--capacity", "1", "--policy", "lru"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "planted" not in res.stdout + res.stderr, res.stderr
    # without -P the planted module would have won: the test can fail
    bare = [sys.executable, "-m", "edgeintel", *cmd[len(SERVER_COMMAND) :]]
    res = subprocess.run(bare, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "planted" in res.stdout + res.stderr


def test_check_input_shape_names_the_file_and_both_shapes(artifact_dir: Path) -> None:
    from edgeintel.onnx_files import check_input_shape, make_session

    sess = make_session(artifact_dir / "m.onnx")
    check_input_shape(sess, (1, 2, 2), "m.onnx")
    with pytest.raises(ModelError, match=r"m.onnx: input 'input' takes shape \[n, 1, 2, 2\]"):
        check_input_shape(sess, (4,), "m.onnx")
