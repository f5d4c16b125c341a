"""Small PyTorch models for the shipped tasks, and user model factories.

Families (``MODELS`` registry), each built as ``factory(input_shape, num_classes, width)``:

- ``image_cnn``: three conv blocks (conv-BN-ReLU), global pooling, linear head;
- ``image_dscnn``: the same with depthwise-separable convolutions;
- ``sensor_cnn`` / ``sensor_dscnn``: 1-D analogues for (channels, samples) windows;
- ``mlp``: two hidden layers for tabular rows.

Models are plain ``nn.Sequential`` stacks of standard layers so that the
compression toolkit can prune, factorize and replace layers by name.
``input_shape`` excludes the batch dimension.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from edgeintel.errors import ModelError
from edgeintel.models.families import MODELS, ModelFactory

#: time limit (s) on importing a user factory, building its model and one forward pass
USER_CODE_TIMEOUT_S = 120.0

__all__ = [
    "MODELS",
    "build_model",
    "count_params",
    "image_cnn",
    "image_dscnn",
    "mlp",
    "sensor_cnn",
    "sensor_dscnn",
]


def _conv(dim: int, cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Module:
    cls = nn.Conv2d if dim == 2 else nn.Conv1d
    return cls(cin, cout, k, padding=k // 2, groups=groups, bias=False)


def _bn(dim: int, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if dim == 2 else nn.BatchNorm1d(c)


def _pool(dim: int) -> nn.Module:
    return nn.MaxPool2d(2) if dim == 2 else nn.MaxPool1d(2)


def _block(dim: int, cin: int, cout: int, separable: bool, k: int) -> list[nn.Module]:
    if separable:
        return [
            _conv(dim, cin, cin, k, groups=cin),
            _bn(dim, cin),
            nn.ReLU(),
            _conv(dim, cin, cout, 1),
            _bn(dim, cout),
            nn.ReLU(),
        ]
    return [_conv(dim, cin, cout, k), _bn(dim, cout), nn.ReLU()]


def _cnn(
    dim: int, input_shape: tuple[int, ...], num_classes: int, width: int, separable: bool, k: int
) -> nn.Sequential:
    if len(input_shape) != dim + 1:
        kind = "(channels, height, width)" if dim == 2 else "(channels, samples)"
        raise ModelError(f"input shape must be {kind}, got {tuple(input_shape)}")
    cin = int(input_shape[0])
    spatial = min(input_shape[1:])
    chans = [width, width * 2, width * 4]
    layers: list[nn.Module] = []
    # the first layer is always a full conv: a depthwise conv of 1-3 input channels is wasteful
    layers += _block(dim, cin, chans[0], False, k)
    if spatial >= 4:
        layers.append(_pool(dim))
        spatial //= 2
    layers += _block(dim, chans[0], chans[1], separable, k)
    if spatial >= 4:
        layers.append(_pool(dim))
    layers += _block(dim, chans[1], chans[2], separable, k)
    layers.append(nn.AdaptiveAvgPool2d(1) if dim == 2 else nn.AdaptiveAvgPool1d(1))
    layers += [nn.Flatten(), nn.Linear(chans[2], num_classes)]
    return nn.Sequential(*layers)


@MODELS.register("image_cnn")
def image_cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Sequential:
    """Image CNN for (C, H, W) inputs."""
    return _cnn(2, input_shape, num_classes, width, separable=False, k=3)


@MODELS.register("image_dscnn")
def image_dscnn(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Sequential:
    """Image CNN with depthwise-separable convolutions after the first layer."""
    return _cnn(2, input_shape, num_classes, width, separable=True, k=3)


@MODELS.register("sensor_cnn")
def sensor_cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Sequential:
    """1-D CNN for (channels, samples) sensor windows."""
    return _cnn(1, input_shape, num_classes, width, separable=False, k=5)


@MODELS.register("sensor_dscnn")
def sensor_dscnn(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Sequential:
    """1-D CNN with depthwise-separable convolutions after the first layer."""
    return _cnn(1, input_shape, num_classes, width, separable=True, k=5)


@MODELS.register("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Sequential:
    """Two hidden layers of ``4 * width`` units over the flattened input."""
    n_in = 1
    for d in input_shape:
        n_in *= int(d)
    hidden = 4 * width
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def _load_module_file(path: Path, ref: str) -> ModuleType:
    """Import one ``.py`` file by its path, under a private module name.

    ``sys.path`` is left alone, so a file such as ``numpy.py`` beside a scenario can
    never shadow an installed package; the file runs only because ``task.model``
    names it.
    """
    if not path.is_file():
        raise ModelError(f"task.model {ref!r}: model file not found: {path}")
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"_edgeintel_user_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ModelError(f"task.model {ref!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a module calling sys.exit() is a bad module too
        sys.modules.pop(name, None)
        raise ModelError(
            f"task.model {ref!r}: importing {path} failed ({exc.__class__.__name__}: {exc})"
        ) from None
    return module


def _import_factory(ref: str) -> ModelFactory:
    """``path/to/file.py:function`` (loaded by path) or ``package.module:function`` (installed)."""
    module_name, _, attr = ref.rpartition(":")
    if module_name.endswith(".py"):
        module = _load_module_file(Path(module_name), ref)
    else:
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:
            raise ModelError(
                f"task.model {ref!r}: cannot import module {module_name!r} ({exc})"
            ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ModelError(f"task.model {ref!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 16,
    seed: int = 0,
    sample_rate_hz: float | None = None,
) -> nn.Module:
    """Build a zoo family or a user factory and check its output.

    A user factory is ``path/to/file.py:function`` (the file is imported by its path;
    ``sys.path`` is not touched) or ``package.module:function`` of an installed
    package. It is called with the keyword arguments it accepts among
    ``input_shape``, ``num_classes`` and ``width``. The model must map a batch
    of ``input_shape`` samples to ``num_classes`` logits. ``sample_rate_hz`` (audio and
    sensor data) is passed to factories that take it (``kws_dscnn``'s front end).
    """
    if ":" not in name:  # a zoo family: our own code, no time limit needed
        return _build_and_check(name, input_shape, num_classes, width, seed, sample_rate_hz)
    return _within_time_limit(
        lambda: _build_and_check(name, input_shape, num_classes, width, seed, sample_rate_hz),
        name,
        USER_CODE_TIMEOUT_S,
    )


def _within_time_limit(fn: Callable[[], nn.Module], name: str, timeout_s: float) -> nn.Module:
    """Run user code (import, build, forward) in a daemon thread and give up after
    ``timeout_s`` with one line naming the factory: a factory or ``forward()`` that never
    returns cannot block ``validate`` or ``run``. An abandoned thread ends with the process.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["model"] = fn()
        except BaseException as exc:  # SystemExit too: a thread would swallow it silently
            box["error"] = exc

    worker = threading.Thread(target=target, name="edgeintel-user-model", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise ModelError(
            f"task.model {name!r}: importing, building and running the model on one batch did "
            f"not finish within {timeout_s:g} s; the factory or its forward() never returns"
        )
    if "error" in box:
        raise box["error"]
    return box["model"]  # type: ignore[no-any-return]


def _build_and_check(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int,
    seed: int,
    sample_rate_hz: float | None = None,
) -> nn.Module:
    factory = _import_factory(name) if ":" in name else MODELS.get(name)
    kwargs: dict[str, Any] = {
        "input_shape": tuple(input_shape),
        "num_classes": num_classes,
        "width": width,
    }
    if sample_rate_hz is not None:
        kwargs["sample_rate_hz"] = float(sample_rate_hz)
    try:
        params = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
    except (TypeError, ValueError):
        pass
    try:
        with torch.random.fork_rng(devices=[]):  # seed the init without touching global RNG
            torch.manual_seed(seed)
            model = factory(**kwargs)
    except ModelError:
        raise
    except (Exception, SystemExit) as exc:
        why = f"it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else exc
        raise ModelError(f"task.model {name!r}: building the model failed: {why}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"task.model {name!r}: must return a torch.nn.Module")
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except (Exception, SystemExit) as exc:  # sys.exit() in forward() is a bad model too
        if isinstance(exc, SystemExit):
            exc = RuntimeError(f"it called sys.exit({exc.code!r})")
        raise ModelError(
            f"task.model {name!r}: forward pass on input shape {tuple(input_shape)} failed: {exc}"
        ) from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ModelError(
            f"task.model {name!r}: output shape {tuple(out.shape[1:])} does not match "
            f"{num_classes} classes; the model must return (batch, {num_classes}) logits"
        )
    return model


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
