"""Central / solo training: learns real data, deterministic by seed, validates its config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeintel.data import load_dataset, train_test_split
from edgeintel.errors import ConfigError
from edgeintel.models import TrainConfig, build_model, evaluate_accuracy, train_model
from edgeintel.models.train import LR_SCHEDULES, make_lr_scheduler, steps_per_epoch
from edgeintel.training.settings import LRSchedule


def _digits() -> tuple[np.ndarray, ...]:
    ds = load_dataset("digits")
    tr, te = train_test_split(ds.y, 0.25, seed=0)
    return ds.x[tr], ds.y[tr], ds.x[te], ds.y[te]


def test_learns_digits() -> None:
    x, y, xt, yt = _digits()
    model = build_model("image_cnn", (1, 8, 8), 10, width=8, seed=0)
    hist = train_model(model, x, y, TrainConfig(epochs=6), seed=0, x_val=xt, y_val=yt)
    assert hist[-1].loss < hist[0].loss
    assert evaluate_accuracy(model, xt, yt) > 0.9


def test_same_seed_same_weights() -> None:
    x, y, _, _ = _digits()
    weights = []
    for _ in range(2):
        m = build_model("mlp", (1, 8, 8), 10, width=4, seed=3)
        train_model(m, x[:300], y[:300], TrainConfig(epochs=2), seed=3)
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of constant, cosine, onecycle"),
    ],
)
def test_bad_config(kwargs: dict[str, float], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def _lrs(schedule: str, lr: float, steps: int) -> list[float]:
    """The learning rate of each of ``steps`` optimizer steps under ``schedule``."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_lr_scheduler(opt, schedule, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return out


def test_lr_schedules_hand_computed() -> None:
    # constant: 0.01 throughout
    assert _lrs("constant", 0.01, 4) == [0.01] * 4
    # cosine over 4 steps: 0.01 * (1 + cos(pi t / 4)) / 2 for t = 0..3
    cos = _lrs("cosine", 0.01, 4)
    assert cos == pytest.approx([0.01, 0.0085355339, 0.005, 0.0014644661], rel=1e-6)
    # onecycle over 10 steps: warm-up over 30% (steps 0..2, from 0.01/25 = 4e-4 to 0.01)
    # along a cosine, then a cosine down to 4e-4 / 1e4 = 4e-8 at step 9
    one = _lrs("onecycle", 0.01, 10)
    assert one[0] == pytest.approx(4e-4)
    assert one[1] == pytest.approx(4e-4 + (0.01 - 4e-4) * 0.5)
    assert one[2] == pytest.approx(0.01)
    # step 5 is 3 of the 7 down-steps (2 -> 9): cos-anneal 0.01 -> 4e-8 at 3/7
    frac = (1 + np.cos(np.pi * 3 / 7)) / 2
    assert one[5] == pytest.approx(4e-8 + (0.01 - 4e-8) * frac)
    assert one[9] == pytest.approx(4e-8)


def test_settings_name_every_schedule() -> None:
    from typing import get_args

    assert get_args(LRSchedule) == LR_SCHEDULES


def test_steps_per_epoch_skips_a_last_single_sample() -> None:
    assert steps_per_epoch(130, 64) == 3  # 64, 64, 2
    assert steps_per_epoch(129, 64) == 2  # 64, 64 (the last one sample is skipped)
    assert steps_per_epoch(1, 64) == 1


def test_schedule_is_used_by_training() -> None:
    """Training steps the schedule: cosine and onecycle runs move the rate away from the
    constant one's, so the weights differ, and every run still learns."""
    x, y, xt, yt = _digits()
    weights = {}
    for schedule in LR_SCHEDULES:
        m = build_model("mlp", (1, 8, 8), 10, width=8, seed=3)
        cfg = TrainConfig(epochs=4, lr=1e-2, lr_schedule=schedule)
        train_model(m, x, y, cfg, seed=3)
        weights[schedule] = torch.cat([p.detach().flatten() for p in m.parameters()])
        assert evaluate_accuracy(m, xt, yt) > 0.8, schedule
    assert not torch.equal(weights["constant"], weights["cosine"])
    assert not torch.equal(weights["constant"], weights["onecycle"])
