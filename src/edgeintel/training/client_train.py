"""Local training of many simulated clients: flat weights in, flat weights out.

``LocalTrainer.train(start, batches, mask)`` runs SGD for ``C`` clients from
their flat starting weights, in one of two ways that give the same weights (up to
float rounding of different kernels):

- ``"vmap"``: clients in chunks with ``torch.func.vmap`` (one batched step trains
  every client of a chunk); pays off for small dense models, where one client's step
  is too small to keep the CPU busy;
- ``"loop"``: one client at a time, a plain PyTorch loop on the wrapped model
  (autograd, in-place SGD). vmap turns a convolution into a grouped convolution and
  adds functional-call overhead per step, so for convolutional models the loop is
  faster (measured on MNIST ``image_cnn``, 20 clients x 1 epoch: see
  benchmarks/results/peers.json, ``fl``); a model vmap cannot batch also uses it.

``mode=None`` picks the loop for models with convolutions and vmap otherwise.
FedProx's proximal term (``mu``) and weight decay are added to each gradient.

BatchNorm running statistics (``bn_stats``): with ``"round"`` (the default) a client's
running mean and variance after a round are the plain mean of its batch statistics over
that round's local steps (PyTorch's cumulative average, ``momentum=None``), so what it
reports describes its data under the model it trained. With the layers' own momentum
(``"momentum"``: 0.1 in PyTorch) 10 local steps keep 0.9^10 = 35% of the stale global
statistics; on the default scenario the averaged statistics then lag the weights so far
that the eval-mode global model sits at chance for the first 3 rounds while the same
weights with batch statistics score 0.33-0.66 (see docs/training.md).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from edgeintel.tasks import TaskKind, make_task
from edgeintel.training.weights import get_weights, weight_shapes

__all__ = ["BN_STATS", "TRAINER_MODES", "LocalTrainer"]

#: the ways of training a batch of clients (see the module docstring)
TRAINER_MODES = ("vmap", "loop")
#: how a client's BatchNorm running statistics follow a round (see the module docstring)
BN_STATS = ("round", "momentum")

log = logging.getLogger(__name__)


class LocalTrainer:
    """SGD for a batch of clients of one model architecture on shared training arrays.

    ``x``, ``y``: the training set every client's batch indices point into;
    ``lr``: SGD step; ``mu``: FedProx proximal weight; ``chunk``: clients per vmap
    batch (``None``: 128); ``seed`` feeds torch's RNG (dropout layers), offset by the
    first sample of each client's (vmap: chunk's) batches; ``mode``: ``"vmap"``,
    ``"loop"`` or ``None`` (loop for models with convolutions, vmap otherwise); ``task``:
    the task kind whose loss is minimised (``None``: classification, cross-entropy);
    ``bn_stats``: ``"round"`` or ``"momentum"`` (see the module docstring).
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
        mode: str | None = None,
        task: TaskKind | None = None,
        bn_stats: str = "round",
    ) -> None:
        if mode is not None and mode not in TRAINER_MODES:
            raise ValueError(f"trainer mode must be one of {TRAINER_MODES}, got {mode!r}")
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}")
        self._bn = (
            [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            if bn_stats == "round"
            else []
        )
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
        self.task = task if task is not None else make_task("classification")
        self._y = torch.from_numpy(np.asarray(y, dtype=self.task.label_dtype))
        # vmap turns a conv into a grouped conv, which on CPU is 1.5-3x slower than
        # training conv clients one at a time; dense models gain from batching clients
        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        self.mode = mode or ("loop" if has_conv else "vmap")
        self._vectorize = self.mode == "vmap"
        self.chunk = chunk or 128
        # the model's own tensors, in flat order (loop mode writes/reads them in place)
        state = model.state_dict(keep_vars=True)
        self._tensors = [state[n] for n in self.names]
        self._sizes = [math.prod(sh) for sh in self.shapes]

    def train(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Train clients from flat starts ``(C, d)`` on ``batches (C, T, B)``; ``mask (C, T)``
        switches steps off (shorter clients: a client's steps end where its mask does).
        Returns the final flat weights ``(C, d)``."""
        saved = [m.momentum for m in self._bn]
        try:
            return self._train(start, batches, mask)
        finally:
            for m, mom in zip(self._bn, saved, strict=True):
                m.momentum = mom

    def _step_momentum(self, done: int) -> None:
        """Before a client's step ``done + 1``: the cumulative average's weight 1/(done + 1)."""
        for m in self._bn:
            m.momentum = 1.0 / (done + 1)

    def _train(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = np.empty_like(start)
        if not self._vectorize:
            for c in range(len(start)):
                out[c] = self._train_one(start[c], batches[c], mask[c])
            return out
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
        model, task = self.model, self.task
        model.train()

        def loss_fn(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
        ) -> torch.Tensor:
            return task.loss(functional_call(model, (p, b), (x,)), task.target(x, y))

        g_fn = vmap(grad(loss_fn), in_dims=(0, 0, 0, 0), randomness="different")
        bt = torch.from_numpy(batches)
        mt = torch.from_numpy(mask.astype(np.float32))
        torch.manual_seed(int(batches[0, 0, 0]) + self.seed)
        with torch.no_grad():
            for t in range(batches.shape[1]):
                xb, yb = self._x[bt[:, t]], self._y[bt[:, t]]
                partial = bool((mt[:, t] < 1).any())
                saved = {n: b.clone() for n, b in buffers.items()} if partial else {}
                self._step_momentum(t)  # every client still training has done t steps
                with torch.enable_grad():
                    if self._vectorize:
                        try:
                            grads = g_fn(params, buffers, xb, yb)
                        except Exception as exc:  # user models vmap cannot batch
                            log.warning("vmap failed (%s); training clients one by one", exc)
                            self._vectorize = False
                            self.mode = "loop"
                            model.eval()
                            return self._train(start, batches, mask)
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

    def _train_one(self, start: np.ndarray, batches: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One client, a plain loop: load ``start (d,)`` into the model, SGD over
        ``batches (T, B)`` where ``mask (T,)`` is 1, return the final flat weights."""
        model = self.model
        flat = torch.from_numpy(np.ascontiguousarray(start, dtype=np.float32))
        with torch.no_grad():
            pos = 0
            for t, size in zip(self._tensors, self._sizes, strict=True):
                t.copy_(flat[pos : pos + size].view_as(t))
                pos += size
            for n, b in self._int_buffers.items():
                model.get_buffer(n).copy_(b)
        params = [p for _, p in model.named_parameters()]
        anchor = [p.detach().clone() for p in params] if self.mu > 0 else []
        bt = torch.from_numpy(np.ascontiguousarray(batches))
        torch.manual_seed(int(batches[0, 0]) + self.seed)
        model.train()
        done = 0
        for t in range(len(bt)):
            if not mask[t] > 0:
                continue
            self._step_momentum(done)
            done += 1
            idx = bt[t]
            xb = self._x[idx]
            loss = self.task.loss(model(xb), self.task.target(xb, self._y[idx]))
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for j, (p, g) in enumerate(zip(params, grads, strict=True)):
                    if self.mu > 0:
                        g = g + self.mu * (p - anchor[j])
                    if self.weight_decay > 0:
                        g = g + self.weight_decay * p
                    p.sub_(g, alpha=self.lr)
        model.eval()
        with torch.no_grad():
            return torch.cat([t.detach().reshape(-1) for t in self._tensors]).numpy()
