"""Knowledge distillation: the loss by hand and a zoo student trained from a teacher."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edgeintel.errors import ConfigError
from edgeintel.inference import DistillConfig, MeasureConfig, compress, distillation_loss
from edgeintel.inference.distill import student_family

from .conftest import Trained


def test_distillation_loss_by_hand() -> None:
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    # T = 1, alpha = 1: KL(p_t || p_s) with p_t = (1-q, q), p_s = (q, 1-q), q = sigmoid(1)
    q = 1 / (1 + math.exp(-1))
    kl = (1 - q) * math.log((1 - q) / q) + q * math.log(q / (1 - q))
    assert float(distillation_loss(s, t, y, 1.0, 1.0)) == pytest.approx(kl, rel=1e-5)
    # alpha = 0 is plain cross-entropy
    assert float(distillation_loss(s, t, y, 3.0, 0.0)) == pytest.approx(
        float(F.cross_entropy(s, y)), rel=1e-6
    )
    # T^2 scaling: at T = 2 the soft term is 4 * KL of the softened distributions
    q2 = 1 / (1 + math.exp(-0.5))
    kl2 = (1 - q2) * math.log((1 - q2) / q2) + q2 * math.log(q2 / (1 - q2))
    assert float(distillation_loss(s, t, y, 2.0, 1.0)) == pytest.approx(4 * kl2, rel=1e-5)
    # identical logits: no soft loss
    assert float(distillation_loss(s, s, y, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-7)


def test_config_and_student_family() -> None:
    assert student_family("auto", "image_cnn") == "image_dscnn"
    assert student_family("auto", "sensor_cnn") == "sensor_dscnn"
    assert student_family("mlp", "image_cnn") == "mlp"
    with pytest.raises(ConfigError, match="teacher's family is unknown"):
        student_family("auto", None)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        DistillConfig(temperature=0)
    with pytest.raises(ConfigError, match=r"alpha must lie in \[0, 1\]"):
        DistillConfig(alpha=1.5)


def test_distill_narrower_student_on_digits(digits_cnn: Trained, tmp_path: Path) -> None:
    res = compress(
        digits_cnn.model,
        [("distill", {"student": "image_cnn", "width": 8, "epochs": 6})],
        digits_cnn.train,
        eval_data=digits_cnn.test,
        family="image_cnn",
        width=16,
        workdir=tmp_path,
        measure=MeasureConfig(runs=5, warmup=1),
    )
    b, f = res.baseline, res.final
    assert f.params < 0.35 * b.params and f.onnx_bytes < 0.4 * b.onnx_bytes
    assert f.accuracy >= b.accuracy - 0.1
    assert res.model is not None and res.model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
