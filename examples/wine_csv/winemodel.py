"""A user model for the wine example: a small multilayer perceptron on 13 table columns.

edgeintel calls ``build`` with the keyword arguments it accepts among ``input_shape``
(one sample's shape: ``(1, 13)`` for a 13-column table) and ``num_classes``.
"""

from __future__ import annotations

import math

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    features = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )
