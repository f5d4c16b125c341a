"""Executed splits: head -> serialized intermediate -> tail equals the unsplit model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeintel.errors import ConfigError, ModelError
from edgeintel.models import build_model, export_onnx
from edgeintel.models.export import export_graph
from edgeintel.offloading.costs import LinkState
from edgeintel.offloading.graph import load_layer_graph
from edgeintel.offloading.split import SplitRunner, mask_from_nodes, split_diff, split_model
from edgeintel.offloading.split_search import SplitContext, linear_costs, mincut_split
from edgeintel.offloading.transfer import deserialize_tensors, serialize_tensors
from edgeintel.onnx_files import make_session


def _export(tmp_path: Path, family: str, shape: tuple[int, ...]) -> str:
    model = build_model(family, shape, 3, width=8, seed=0)
    return export_onnx(model, shape, tmp_path / f"{family}.onnx", ["a", "b", "c"]).path


def _check_cuts(path: str, tmp_path: Path, step: int = 1) -> int:
    g = load_layer_graph(path)
    x = np.random.default_rng(0).standard_normal((1, *g.input_shape)).astype(np.float32)
    full = make_session(path).run(None, {g.input_name: x})[0]
    masks = [g.prefix_mask(k) for k in range(0, g.num_nodes + 1, step)]
    masks.append(np.ones(g.num_nodes, dtype=bool))
    # the min-cut's (possibly non-prefix) cuts at a few bandwidths
    ms = np.linspace(1.0, 0.1, g.num_nodes)
    for bw in (1.0, 10.0, 100.0):
        ctx = SplitContext(ms * 10, ms, LinkState(bw, 5.0))
        masks.append(mincut_split(g, linear_costs(g, ctx)))
    for i, mask in enumerate(masks):
        sm = split_model(path, g, mask, tmp_path / f"cut{i}")
        res = SplitRunner(sm).run(x)
        np.testing.assert_allclose(res.outputs[0], full, atol=1e-4, rtol=1e-4)
        if 0 < mask.sum() < g.num_nodes:
            assert res.payload_bytes >= sum(t.bytes for t in g.crossing(mask))
    return len(masks)


def test_every_cut_of_a_zoo_cnn_matches_the_full_model(tmp_path: Path) -> None:
    assert _check_cuts(_export(tmp_path, "image_cnn", (3, 16, 16)), tmp_path) > 10


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "step"), [("mobilenet_v3_small", 1), ("resnet18", 2), ("googlenet", 6)]
)
def test_cuts_of_the_realistic_models_match_the_full_model(
    tmp_path: Path, family: str, step: int
) -> None:
    _check_cuts(_export(tmp_path, family, (3, 96, 96)), tmp_path, step)


def test_int8_intermediate_is_smaller_and_close(tmp_path: Path) -> None:
    path = _export(tmp_path, "image_cnn", (3, 16, 16))
    g = load_layer_graph(path)
    x = np.random.default_rng(1).standard_normal((1, *g.input_shape)).astype(np.float32)
    mask = g.prefix_mask(g.num_nodes // 2)
    sm = split_model(path, g, mask, tmp_path / "c")
    plain, q = SplitRunner(sm).run(x), SplitRunner(sm, int8=True).run(x)
    assert q.payload_bytes < plain.payload_bytes / 3
    scale = np.abs(plain.outputs[0]).max()
    assert np.abs(q.outputs[0] - plain.outputs[0]).max() < 0.05 * scale


def test_serialization_round_trip_and_quantization_error() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    b = np.arange(6, dtype=np.int64)
    out = deserialize_tensors(serialize_tensors({"a": a, "b": b}))
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    q = deserialize_tensors(serialize_tensors({"a": a}, int8=True))["a"]
    step = (a.max() - a.min()) / 255
    assert np.abs(q - a).max() <= step / 2 + 1e-6


def test_bad_cuts_and_unknown_nodes_are_one_line_errors(tmp_path: Path) -> None:
    path = _export(tmp_path, "image_cnn", (3, 16, 16))
    g = load_layer_graph(path)
    with pytest.raises(ModelError, match="unknown node 'nope'"):
        g.index("nope")
    # the last node alone on the device needs its inputs from the server
    with pytest.raises(ConfigError, match="cannot be cut there"):
        mask_from_nodes(g, [g.names[-1]])
    bad = np.zeros(g.num_nodes, dtype=bool)
    bad[-1] = True
    with pytest.raises(ConfigError, match="cannot be cut there"):
        split_model(path, g, bad, tmp_path / "bad")


class _TwoOutputs(torch.nn.Module):
    """An auxiliary head on the first block (read by nothing else) and the main head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.aux = torch.nn.Linear(4 * 8 * 8, 3)
        self.fc = torch.nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.relu(self.c1(x))
        return self.aux(a.flatten(1)), self.fc(torch.relu(self.c2(a)).flatten(1))


def test_every_valid_cut_of_a_two_output_model_executes(tmp_path: Path) -> None:
    # a cut that computes the auxiliary output on the device used to write an invalid tail
    path = tmp_path / "two.onnx"
    export_graph(_TwoOutputs().eval(), torch.zeros(1, 3, 8, 8), path, "x", ["aux", "main"])
    g = load_layer_graph(path)
    xs = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    aux = next(t for t in g.tensors if t.name == "aux")
    masks = [np.array(b) for b in itertools.product([True, False], repeat=g.num_nodes)]
    valid = [m for m in masks if g.is_valid_cut(m)]
    assert len(valid) > 10
    for i, mask in enumerate(valid):
        runner = SplitRunner(split_model(path, g, mask, tmp_path / f"c{i}"))
        assert split_diff(runner, path, xs) < 1e-5
        if mask[aux.producer] and not mask.all():  # made on the device, it travels (charged)
            assert aux in g.crossing(mask)
            assert runner.run(xs[:1]).payload_bytes >= sum(t.bytes for t in g.crossing(mask))
