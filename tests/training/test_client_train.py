"""LocalTrainer: the vmap and the one-at-a-time loop give the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeintel.training.client_train import LocalTrainer
from edgeintel.training.engine import local_batches
from edgeintel.training.weights import flatten, get_weights


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 4),
    )


def _dense() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 4))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((60, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, 60)


@pytest.mark.parametrize("build", [_conv, _dense])
@pytest.mark.parametrize("mu,wd", [(0.0, 0.0), (0.3, 0.01)])
def test_vmap_and_loop_train_to_the_same_weights(build, mu: float, wd: float) -> None:
    x, y = _data()
    model = build()
    w0 = flatten(get_weights(model))
    rng = np.random.default_rng(1)
    start = np.stack([w0 + 0.01 * rng.standard_normal(w0.size).astype(np.float32)
                      for _ in range(3)])  # fmt: skip
    batches = rng.integers(0, 60, (3, 4, 5))
    mask = np.ones((3, 4), np.float32)
    mask[1, 2:] = 0  # a client with fewer steps
    outs = {
        mode: LocalTrainer(model, x, y, 0.1, mu, wd, chunk=2, mode=mode).train(start, batches, mask)
        for mode in ("vmap", "loop")
    }
    assert not np.allclose(outs["loop"], start)  # training moved the weights
    np.testing.assert_allclose(outs["vmap"], outs["loop"], rtol=0, atol=2e-6)
    # the short client's last two steps changed nothing: equal to training it 2 steps
    two = LocalTrainer(model, x, y, 0.1, mu, wd, mode="loop").train(
        start[1:2], batches[1:2, :2], mask[1:2, :2]
    )
    np.testing.assert_array_equal(outs["loop"][1], two[0])


def test_the_loop_is_one_plain_sgd_pass() -> None:
    """One loop step equals a textbook torch.optim.SGD step from the same weights (BatchNorm
    with PyTorch's cumulative average: a round's first step sets the running statistics)."""
    x, y = _data()
    model = _conv()
    w0 = flatten(get_weights(model))
    b = np.arange(5)[None, None]
    out = LocalTrainer(model, x, y, 0.1, mode="loop").train(w0[None], b, np.ones((1, 1)))[0]
    ref = _conv()
    ref[1].momentum = None
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref.train()
    nn.functional.cross_entropy(ref(torch.from_numpy(x[:5])), torch.from_numpy(y[:5])).backward()
    opt.step()
    np.testing.assert_array_equal(out, flatten(get_weights(ref)))


def test_mode_is_picked_by_model_kind_and_checked() -> None:
    x, y = _data()
    assert LocalTrainer(_conv(), x, y, 0.1).mode == "loop"
    assert LocalTrainer(_dense(), x, y, 0.1).mode == "vmap"
    with pytest.raises(ValueError, match="trainer mode"):
        LocalTrainer(_dense(), x, y, 0.1, mode="fast")


def test_local_batches_cover_the_shard_each_pass() -> None:
    idx = np.arange(100, 110)
    b = local_batches(idx, 3, 4, seed=0, r=1, sub=0, client=2)
    assert b.shape == (3, 4)
    assert sorted(b.ravel()[:10]) == list(idx)  # the first pass is a permutation
    np.testing.assert_array_equal(b, local_batches(idx, 3, 4, 0, 1, 0, 2))
    assert not np.array_equal(b, local_batches(idx, 3, 4, 0, 2, 0, 2))
