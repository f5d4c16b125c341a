"""Matplotlib figures shared by the report sections (Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["bar_chart", "line_chart", "stacked_class_bars", "training_curve"]


def stacked_class_bars(counts: np.ndarray, classes: Sequence[str], devices: Sequence[str]) -> Any:
    """Stacked bars of class counts per device: (n_devices, n_classes) counts."""
    n_dev = counts.shape[0]
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.18 * n_dev), 3.6))
    bottom = np.zeros(n_dev)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        ax.bar(
            np.arange(n_dev),
            counts[:, c],
            bottom=bottom,
            color=cmap(c % cmap.N),
            label=name,
            width=0.85,
        )
        bottom += counts[:, c]
    ax.set_xlabel("device")
    ax.set_ylabel("training samples")
    if n_dev <= 24:
        ax.set_xticks(np.arange(n_dev), list(devices), rotation=70, fontsize=7)
    ax.legend(fontsize=7, title="class", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def training_curve(history: Sequence[Any]) -> Any:
    """Loss (left axis) and train / validation accuracy (right axis) per epoch."""
    epochs = [h.epoch for h in history]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(epochs, [h.loss for h in history], color="tab:red", label="loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(
        epochs,
        [h.train_accuracy for h in history],
        color="tab:blue",
        ls="--",
        label="train accuracy",
    )
    if history and history[0].val_accuracy is not None:
        ax2.plot(epochs, [h.val_accuracy for h in history], color="tab:blue", label="test accuracy")
    ax2.set_ylabel("accuracy", color="tab:blue")
    ax2.set_ylim(0, 1.02)
    ax2.legend(loc="center right", fontsize=8, frameon=False)
    return fig


def line_chart(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    logy: bool = False,
) -> Any:
    """One line per named series over a shared x axis."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    styles = ["-", "--", ":", "-."]  # equal series (e.g. up- and downlink bytes) stay visible
    for k, (name, ys) in enumerate(series.items()):
        ax.plot(list(x)[: len(ys)], list(ys), ls=styles[k % len(styles)], marker="o", ms=3,
                label=name)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def bar_chart(labels: Sequence[str], values: Sequence[float], ylabel: str) -> Any:
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(labels) + 2), 3.2))
    ax.bar(list(labels), list(values), color="tab:green")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=20)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
