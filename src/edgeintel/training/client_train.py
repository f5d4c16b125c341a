"""Local training of many simulated clients at once: flat weights in, flat weights out.

``LocalTrainer.train(start, batches, mask)`` runs SGD for ``C`` clients from
their flat starting weights. Clients are trained in chunks with
``torch.func.vmap`` (one batched step trains every client of a chunk), which is
what makes hundreds of simulated devices cheap on two cores; a model vmap
cannot batch falls back to one client at a time, with the same results.
FedProx's proximal term (``mu``) and weight decay are added to each gradient.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from edgeintel.training.weights import get_weights, weight_shapes

__all__ = ["LocalTrainer"]

log = logging.getLogger(__name__)


class LocalTrainer:
    """SGD for a batch of clients of one model architecture on shared training arrays.

    ``x``, ``y``: the training set every client's batch indices point into;
    ``lr``: SGD step; ``mu``: FedProx proximal weight; ``chunk``: clients per vmap
    batch (``None``: 1 for models with convolutions, 128 otherwise); ``seed``
    feeds torch's RNG (dropout layers), offset by the first sample of the batch.
    """

    def __init__(
        self,
        model: nn.Module,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        mu: float = 0.0,
        weight_decay: float = 0.0,
        chunk: int | None = None,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.lr, self.mu, self.weight_decay, self.seed = lr, mu, weight_decay, seed
        self.shapes = weight_shapes(get_weights(model))
        self.names = [k for k, v in model.state_dict().items() if torch.is_floating_point(v)]
        self._param_names = [n for n, _ in model.named_parameters()]
        self._buffer_names = [n for n, _ in model.named_buffers()]
        self._int_buffers = {
            n: b.detach().clone()
            for n, b in model.named_buffers()
            if not torch.is_floating_point(b)
        }
        self._x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self._y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self._vectorize = True
        # Clients trained per vmap batch. vmap turns a conv into a grouped conv, which on
        # CPU is 1.5-3x slower than training conv clients one at a time (measured on
        # MNIST image_cnn: 28.6 s at 128 vs 10.6 s at 1 per round); dense models gain a little.
        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        self.chunk = chunk or (1 if has_conv else 128)

    def train(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Train clients from flat starts ``(C, d)`` on ``batches (C, T, B)``; ``mask (C, T)``
        switches steps off (shorter clients). Returns the final flat weights ``(C, d)``."""
        out = np.empty_like(start)
        for lo in range(0, len(start), self.chunk):
            hi = min(lo + self.chunk, len(start))
            out[lo:hi] = self._train_chunk(start[lo:hi], batches[lo:hi], mask[lo:hi])
        return out

    def measure_step_ms(self, start: np.ndarray, sample: int, batch_size: int) -> float:
        """Median wall time of one local training step on this machine (ms)."""
        batches = np.zeros((1, 1, batch_size), dtype=np.int64) + sample
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            self.train(start[None], batches, np.ones((1, 1), dtype=np.float32))
            times.append(time.perf_counter() - t0)
        return float(np.median(times[2:]) * 1000.0)

    def _train_chunk(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n_c = len(start)
        flat = torch.from_numpy(np.ascontiguousarray(start, dtype=np.float32))
        tensors: dict[str, torch.Tensor] = {}
        pos = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            tensors[name] = flat[:, pos : pos + size].reshape(n_c, *shape).clone()
            pos += size
        params = {n: tensors[n] for n in self._param_names}
        buffers = {n: tensors[n] for n in self._buffer_names if n in tensors}
        for n, b in self._int_buffers.items():
            buffers[n] = b.unsqueeze(0).repeat(n_c, *([1] * b.ndim)).clone()
        anchor = {n: p.clone() for n, p in params.items()} if self.mu > 0 else {}
        model = self.model
        model.train()

        def loss_fn(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
        ) -> torch.Tensor:
            return nn.functional.cross_entropy(functional_call(model, (p, b), (x,)), y)

        g_fn = vmap(grad(loss_fn), in_dims=(0, 0, 0, 0), randomness="different")
        bt = torch.from_numpy(batches)
        mt = torch.from_numpy(mask.astype(np.float32))
        torch.manual_seed(int(batches[0, 0, 0]) + self.seed)
        with torch.no_grad():
            for t in range(batches.shape[1]):
                xb, yb = self._x[bt[:, t]], self._y[bt[:, t]]
                partial = bool((mt[:, t] < 1).any())
                saved = {n: b.clone() for n, b in buffers.items()} if partial else {}
                with torch.enable_grad():
                    if self._vectorize:
                        try:
                            grads = g_fn(params, buffers, xb, yb)
                        except Exception as exc:  # user models vmap cannot batch
                            log.warning("vmap failed (%s); training clients one by one", exc)
                            self._vectorize = False
                    if not self._vectorize:
                        grads = self._grads_loop(loss_fn, params, buffers, xb, yb)
                m = mt[:, t]
                for n, p in params.items():
                    g = grads[n]
                    if self.mu > 0:
                        g = g + self.mu * (p - anchor[n])
                    if self.weight_decay > 0:
                        g = g + self.weight_decay * p
                    p -= self.lr * m.view(-1, *([1] * (p.ndim - 1))) * g
                if partial:
                    keep = m > 0
                    for n, b in buffers.items():
                        b.copy_(torch.where(keep.view(-1, *([1] * (b.ndim - 1))), b, saved[n]))
        model.eval()
        return torch.cat([tensors[n].reshape(n_c, -1) for n in self.names], 1).numpy()

    @staticmethod
    def _grads_loop(
        loss_fn: Callable[..., torch.Tensor],
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        xb: torch.Tensor,
        yb: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        per: list[dict[str, torch.Tensor]] = []
        for c in range(len(xb)):
            p = {n: v[c] for n, v in params.items()}
            b = {n: v[c] for n, v in buffers.items()}
            per.append(grad(loss_fn)(p, b, xb[c], yb[c]))
        return {n: torch.stack([g[n] for g in per]) for n in params}
