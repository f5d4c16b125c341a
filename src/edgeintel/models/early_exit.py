"""Early-exit networks (BranchyNet): a small classifier after an intermediate block.

A backbone is viewed as a chain of *stages* at whose boundaries exactly one
tensor flows (``backbone_stages``): MobileNetV3's feature blocks and its
classifier, ResNet's stem, four layers and classifier, or the children of a zoo
``nn.Sequential``. ``EarlyExitNet`` shares (does not copy) those stages:
``prefix`` (the stages before the exit point), ``exit_head`` (global average
pool + one linear layer: BranchyNet's branch at its cheapest, about C x K
multiply-adds) and ``suffix`` (the rest); ``suffix(prefix(x))`` is the backbone.

``fit_exit_head`` trains the exit head *post hoc* on the frozen backbone's
features of the training split (the backbone's own predictions do not change,
so a trained model gains an exit without retraining). ``export_early_exit``
writes three ONNX graphs:

- ``head.onnx``: ``input`` -> (``exit_logits``, ``feature``): what the device runs
  up to the exit;
- ``tail.onnx``: ``feature`` -> ``logits``: the rest, on the device or a server;
- ``early_exit.onnx``: the whole model with an ONNX ``If``: when the exit is
  confident (``ExitRule``) the exit logits are returned and the suffix is *not
  executed*; otherwise the suffix runs. Outputs ``logits`` and ``exited`` (bool).
  The decision is per request: with a batch, the batch exits only when every
  input in it is confident.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeintel.errors import ConfigError, ModelError
from edgeintel.models.export import INPUT_NAME, OUTPUT_NAME, export_graph
from edgeintel.models.train import EpochRecord, TrainConfig, train_model

__all__ = [
    "EXITED_NAME",
    "EXIT_LOGITS_NAME",
    "FEATURE_NAME",
    "EarlyExitFiles",
    "EarlyExitNet",
    "ExitKind",
    "ExitRule",
    "attach_exit",
    "backbone_stages",
    "exit_scores",
    "export_early_exit",
    "fit_exit_head",
]

EXIT_LOGITS_NAME = "exit_logits"
FEATURE_NAME = "feature"
EXITED_NAME = "exited"


class ExitKind(StrEnum):
    """How an exit's confidence is read from its logits."""

    MAX_PROB = "max_prob"  # exit when the top softmax probability >= threshold
    ENTROPY = "entropy"  # exit when the softmax entropy (nats) <= threshold


def exit_scores(logits: np.ndarray, kind: ExitKind | str) -> np.ndarray:
    """Confidence per row of ``logits`` (N, K), higher = more confident.

    ``max_prob``: the top softmax probability; ``entropy``: minus the softmax
    entropy in nats (so that both order inputs the same way round).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ConfigError(f"exit logits must be (N, classes), got shape {z.shape}")
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if ExitKind(kind) is ExitKind.MAX_PROB:
        return np.asarray(p.max(axis=1))
    return np.asarray(np.sum(p * np.log(np.clip(p, 1e-30, None)), axis=1))


@dataclass(frozen=True)
class ExitRule:
    """When an input leaves at the exit: ``kind`` and its ``threshold``.

    ``max_prob``: exit when the top probability >= threshold (``inf``: never);
    ``entropy``: exit when the entropy (nats) <= threshold (``-inf``: never).
    """

    kind: ExitKind = ExitKind.MAX_PROB
    threshold: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ExitKind(self.kind))
        if np.isnan(self.threshold):
            raise ConfigError("exit threshold must be a number, got nan")

    @property
    def score_threshold(self) -> float:
        """The threshold on ``exit_scores`` (exit when score >= it)."""
        return self.threshold if self.kind is ExitKind.MAX_PROB else -self.threshold

    def exits(self, logits: np.ndarray) -> np.ndarray:
        """Boolean per row of ``logits`` (N, K): does this input leave at the exit?"""
        return np.asarray(exit_scores(logits, self.kind) >= self.score_threshold)


def backbone_stages(model: nn.Module) -> list[nn.Module]:
    """The model as a chain of stages (one tensor between consecutive stages).

    Supports torchvision MobileNetV3 / ResNet and plain ``nn.Sequential`` models;
    anything else raises a ``ModelError`` (GoogLeNet's inception branches have no
    single-tensor boundary inside a stage we could name generically).
    """
    if isinstance(model, nn.Sequential):
        return list(model.children())
    kind = type(model).__name__
    part = dict(model.named_children())
    if kind == "MobileNetV3":
        head = nn.Sequential(part["avgpool"], nn.Flatten(1), part["classifier"])
        return [*part["features"].children(), head]
    if kind == "ResNet":
        stem = nn.Sequential(part["conv1"], part["bn1"], part["relu"], part["maxpool"])
        head = nn.Sequential(part["avgpool"], nn.Flatten(1), part["fc"])
        return [stem, *(part[f"layer{i}"] for i in range(1, 5)), head]
    raise ModelError(
        f"early exit needs a chain of stages; {kind} is not supported "
        "(use mobilenet_v3_small, resnet18 or a zoo nn.Sequential model)"
    )


class EarlyExitNet(nn.Module):
    """``prefix`` -> (``exit_head``, ``suffix``); ``forward``: (exit logits, final logits)."""

    def __init__(self, prefix: nn.Sequential, exit_head: nn.Sequential, suffix: nn.Sequential):
        super().__init__()
        self.prefix = prefix
        self.exit_head = exit_head
        self.suffix = suffix

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.prefix(x)
        return self.exit_head(f), self.suffix(f)


def attach_exit(
    model: nn.Module, input_shape: tuple[int, ...], num_classes: int, after: int, seed: int = 0
) -> EarlyExitNet:
    """An exit after the first ``after`` stages of ``model`` (1 <= after < number of stages).

    The exit head is global average pooling (for image / sensor feature maps)
    and a linear layer to ``num_classes`` logits, randomly initialised by ``seed``.
    """
    stages = backbone_stages(model)
    if not 1 <= after < len(stages):
        raise ConfigError(
            f"an exit goes after stage 1..{len(stages) - 1} of this model, got after={after}"
        )
    prefix = nn.Sequential(*stages[:after])
    suffix = nn.Sequential(*stages[after:])
    was_training = model.training
    prefix.eval()
    with torch.no_grad():
        f = prefix(torch.zeros(1, *input_shape))
    model.train(was_training)
    pool: list[nn.Module]
    if f.dim() == 4:
        pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    elif f.dim() == 3:
        pool = [nn.AdaptiveAvgPool1d(1), nn.Flatten(1)]
    else:
        pool = [nn.Flatten(1)]
    channels = int(f.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = nn.Linear(channels, num_classes)
    return EarlyExitNet(prefix, nn.Sequential(*pool, linear), suffix)


def _features(net: EarlyExitNet, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Pooled prefix features (N, C) of ``x`` in eval mode (the exit head's linear input)."""
    pool = net.exit_head[:-1]
    was = net.training
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
            out.append(pool(net.prefix(xb)).numpy())
    net.train(was)
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)


def fit_exit_head(
    net: EarlyExitNet,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig | None = None,
    seed: int = 0,
) -> list[EpochRecord]:
    """Train only the exit head (post hoc) on the frozen backbone's features of ``x``.

    The prefix runs once in eval mode; the linear layer trains on the pooled
    features with Adam (``config``, default 30 epochs at lr 0.01), so the backbone's
    weights and predictions are untouched.
    """
    cfg = config or TrainConfig(epochs=30, batch_size=64, lr=1e-2)
    feats = _features(net, x)
    return train_model(nn.Sequential(net.exit_head[-1]), feats, np.asarray(y), cfg, seed=seed)


@dataclass(frozen=True)
class EarlyExitFiles:
    """The three ONNX graphs of an early-exit model and what the planner needs about them."""

    head_path: str
    tail_path: str
    fused_path: str
    rule: ExitRule
    feature_shape: tuple[int, ...]  # without the batch axis

    @property
    def feature_bytes(self) -> int:
        """Bytes of the float32 feature one request sends when it does not exit."""
        return 4 * int(np.prod(self.feature_shape))


class _Head(nn.Module):
    def __init__(self, net: EarlyExitNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net.prefix(x)
        return self.net.exit_head(f), f


def export_early_exit(
    net: EarlyExitNet, input_shape: tuple[int, ...], out_dir: str | Path, rule: ExitRule
) -> EarlyExitFiles:
    """Write ``head.onnx``, ``tail.onnx`` and the fused ``early_exit.onnx`` (see the module doc)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    was = net.training
    net.eval()
    try:
        dummy = torch.zeros(1, *input_shape)
        with torch.no_grad():
            feat = net.prefix(dummy)
        head_path, tail_path = out / "head.onnx", out / "tail.onnx"
        export_graph(_Head(net), dummy, head_path, INPUT_NAME, [EXIT_LOGITS_NAME, FEATURE_NAME])
        export_graph(net.suffix, feat, tail_path, FEATURE_NAME, [OUTPUT_NAME])
    finally:
        net.train(was)
    fused_path = out / "early_exit.onnx"
    _fuse(head_path, tail_path, fused_path, rule)
    return EarlyExitFiles(
        str(head_path), str(tail_path), str(fused_path), rule, tuple(int(d) for d in feat.shape[1:])
    )


def _fuse(head_path: Path, tail_path: Path, out_path: Path, rule: ExitRule) -> None:
    """One graph: the head, the confidence test, and ``If`` (exit logits | the tail's subgraph)."""
    import onnx
    from onnx import TensorProto, helper

    head = onnx.load(str(head_path))
    tail = onnx.load(str(tail_path))
    # the tail's names go under a prefix so they cannot collide with the head's; its
    # input ``feature`` stays unprefixed: the else-branch reads it from the outer scope
    tail = onnx.compose.add_prefix(tail, "tail/", rename_inputs=False, rename_outputs=True)
    tg = tail.graph
    tail_out = tg.output[0].name
    else_branch = helper.make_graph(
        [*tg.node, helper.make_node("Identity", [tail_out], ["else_logits"])],
        "suffix",
        [],
        [helper.make_tensor_value_info("else_logits", TensorProto.FLOAT, None)],
        initializer=list(tg.initializer),
    )
    then_branch = helper.make_graph(
        [helper.make_node("Identity", [EXIT_LOGITS_NAME], ["then_logits"])],
        "exit",
        [],
        [helper.make_tensor_value_info("then_logits", TensorProto.FLOAT, None)],
    )
    nodes = [helper.make_node("Softmax", [EXIT_LOGITS_NAME], ["ee/probs"], axis=1)]
    if rule.kind is ExitKind.MAX_PROB:
        nodes += [
            helper.make_node("ReduceMax", ["ee/probs"], ["ee/conf"], axes=[1], keepdims=0),
            helper.make_node("ReduceMin", ["ee/conf"], ["ee/least"], keepdims=0),
            helper.make_node("GreaterOrEqual", ["ee/least", "ee/thr"], [EXITED_NAME]),
        ]
    else:
        nodes += [
            helper.make_node("Clip", ["ee/probs", "ee/tiny"], ["ee/clipped"]),
            helper.make_node("Log", ["ee/clipped"], ["ee/logp"]),
            helper.make_node("Mul", ["ee/probs", "ee/logp"], ["ee/plogp"]),
            helper.make_node("ReduceSum", ["ee/plogp", "ee/axis1"], ["ee/negent"], keepdims=0),
            helper.make_node("Neg", ["ee/negent"], ["ee/ent"]),
            helper.make_node("ReduceMax", ["ee/ent"], ["ee/most"], keepdims=0),
            helper.make_node("LessOrEqual", ["ee/most", "ee/thr"], [EXITED_NAME]),
        ]
    nodes.append(
        helper.make_node(
            "If",
            [EXITED_NAME],
            [OUTPUT_NAME],
            then_branch=then_branch,
            else_branch=else_branch,
        )
    )
    thr = float(np.clip(rule.threshold, -3.0e38, 3.0e38))
    consts = [
        helper.make_tensor("ee/thr", TensorProto.FLOAT, [], [thr]),
        helper.make_tensor("ee/tiny", TensorProto.FLOAT, [], [1e-30]),
        helper.make_tensor("ee/axis1", TensorProto.INT64, [1], [1]),
    ]
    hg = head.graph
    graph = helper.make_graph(
        [*hg.node, *nodes],
        "early_exit",
        list(hg.input),
        [
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", None]),
            helper.make_tensor_value_info(EXITED_NAME, TensorProto.BOOL, []),
        ],
        initializer=[*hg.initializer, *consts],
    )
    model = helper.make_model(graph, opset_imports=list(head.opset_import))
    model.ir_version = head.ir_version
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"the fused early-exit graph is invalid: {exc}") from None
    onnx.save(model, str(out_path))
