"""Matplotlib figures shared by the report sections (Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "bar_chart",
    "confusion_matrix",
    "latency_distribution",
    "line_chart",
    "per_device_accuracy",
    "round_curve",
    "stacked_class_bars",
    "training_curve",
]


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


def training_curve(
    history: Sequence[Any], chance: float | None = None, metric: str = "accuracy"
) -> Any:
    """Loss (left axis) and train / validation accuracy (right axis) per epoch; integer ticks.
    For a task kind without accuracy the right axis is its headline ``metric`` (the records'
    ``val_metric``, e.g. RMSE), unbounded."""
    from matplotlib.ticker import MaxNLocator

    epochs = [h.epoch for h in history]
    fig, ax = plt.subplots(figsize=(6.8, 3.6))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.plot(epochs, [h.loss for h in history], color="tab:red", label="loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:red")
    ax2 = ax.twinx()
    if history and history[0].train_accuracy is not None:  # None: a kind without accuracy
        ax2.plot(
            epochs,
            [h.train_accuracy for h in history],
            color="tab:blue",
            ls="--",
            label="train accuracy",
        )
    if history and history[0].val_accuracy is not None:
        ax2.plot(epochs, [h.val_accuracy for h in history], color="tab:blue", label="test accuracy")
    other = bool(history) and getattr(history[0], "val_metric", None) is not None
    if other:
        ax2.plot(epochs, [h.val_metric for h in history], color="tab:blue", label=f"test {metric}")
    if chance is not None:
        ax2.axhline(chance, color="tab:gray", lw=1.0, ls=":", label=f"chance ({chance:.3f})")
    ax2.set_ylabel("accuracy" if not other else metric, color="tab:blue")
    if not other:
        ax2.set_ylim(0, 1.02)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=4)  # fmt: skip
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
    if all(float(v).is_integer() for v in x):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        _legend_below(ax)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def bar_chart(labels: Sequence[str], values: Sequence[float], ylabel: str) -> Any:
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(labels) + 2), 3.2))
    ax.bar(list(labels), list(values), color="tab:green")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=20)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _legend_below(ax: Any, ncol: int = 3) -> None:
    """A legend under the axes, so it never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            fontsize=8,
            frameon=False,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
            ncol=min(ncol, len(handles)),
        )


def round_curve(
    x: Sequence[int],
    series: dict[str, Sequence[float]],
    *,
    xlabel: str = "round",
    ylabel: str = "test accuracy",
    baseline: float | None = None,
    baseline_label: str = "central baseline",
    chance: float | None = None,
) -> Any:
    """Accuracy (or any metric) per round with the central baseline and chance as lines.

    Integer ticks on the round axis; the legend sits under the plot.
    """
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    styles = ["-", "--", ":", "-."]
    for k, (name, ys) in enumerate(series.items()):
        ax.plot(list(x)[: len(ys)], list(ys), ls=styles[k % len(styles)], marker="o", ms=3,
                label=name)  # fmt: skip
    if baseline is not None:
        ax.axhline(baseline, color="tab:green", lw=1.2, ls="--", label=f"{baseline_label} "
                   f"({baseline:.3f})")  # fmt: skip
    if chance is not None:
        ax.axhline(chance, color="tab:red", lw=1.0, ls=":", label=f"chance ({chance:.3f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if "accuracy" in ylabel:
        ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    _legend_below(ax)
    return fig


def confusion_matrix(cm: np.ndarray, classes: Sequence[str]) -> Any:
    """Row-normalised confusion matrix (true class per row); counts written in each cell."""
    cm = np.asarray(cm, dtype=float)
    n = cm.shape[0]
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = min(7.5, 2.2 + 0.42 * n)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.55 else "#1d2330")  # fmt: skip
    ticks = np.arange(n)
    labels = [str(c) for c in classes]
    ax.set_xticks(ticks, labels, rotation=60 if max(map(len, labels)) > 3 else 0, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return fig


def per_device_accuracy(
    names: Sequence[str],
    accuracy: Sequence[float],
    groups: Sequence[str],
    *,
    chance: float | None = None,
    overall: float | None = None,
) -> Any:
    """One bar per device (coloured by group) with chance and overall accuracy as lines."""
    n = len(names)
    fig, ax = plt.subplots(figsize=(min(14, 3.5 + 0.2 * n), 3.6))
    cmap = plt.get_cmap("tab10")
    order = list(dict.fromkeys(groups))
    for g_i, g in enumerate(order):
        idx = [i for i in range(n) if groups[i] == g]
        ax.bar(idx, [accuracy[i] for i in idx], color=cmap(g_i % 10), width=0.85, label=g)
    if overall is not None:
        ax.axhline(overall, color="black", lw=1.0, ls="--", label=f"test set ({overall:.3f})")
    if chance is not None:
        ax.axhline(chance, color="tab:red", lw=1.0, ls=":", label=f"chance ({chance:.3f})")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("expected accuracy")
    ax.set_xlabel("device")
    if n <= 30:
        ax.set_xticks(np.arange(n), list(names), rotation=70, fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()  # above: rotated device names sit below
    ax.legend(handles, labels, fontsize=8, frameon=False, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=min(4, len(handles)))  # fmt: skip
    return fig


def latency_distribution(samples: dict[str, Sequence[float]], xlabel: str) -> Any:
    """Violin + box per named sample set (horizontal); log scale when they span > 20x."""
    names = list(samples)
    full = [np.asarray(samples[k], dtype=float) for k in names]
    # rare stalls of a shared machine would stretch the axis over the whole distribution:
    # draw up to 3x each set's p99 and say how many samples lie beyond
    data = [d[d <= 3 * np.percentile(d, 99)] for d in full]
    cut = sum(len(f) - len(d) for f, d in zip(full, data, strict=True))
    fig, ax = plt.subplots(figsize=(6.8, 1.4 + 0.6 * len(names)))
    pos = np.arange(1, len(names) + 1)
    lo = min(float(d.min()) for d in data)
    hi = max(float(d.max()) for d in data)
    logx = lo > 0 and hi / lo > 20
    plot_data = [np.log10(d) for d in data] if logx else data
    parts = ax.violinplot(plot_data, positions=pos, vert=False, showextrema=False, widths=0.8)
    for body in parts["bodies"]:  # type: ignore[attr-defined]
        body.set_alpha(0.35)
    ax.boxplot(plot_data, positions=pos, vert=False, widths=0.25, showfliers=False,
               medianprops={"color": "black"})  # fmt: skip
    for p, d in zip(pos, plot_data, strict=True):
        ax.plot(np.percentile(d, 95), p, marker="|", ms=14, color="tab:red")
    ax.set_yticks(pos, names, fontsize=8)
    if logx:  # data are drawn as log10(ms): put ticks at 1-2-5 steps of each decade
        decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
        ticks = [m * 10.0**k for k in decades for m in (1, 2, 5)
                 if lo / 1.5 <= m * 10.0**k <= hi * 1.5]  # fmt: skip
        ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
        xlabel += " (log scale)"
    if cut:
        xlabel += f"; {cut} stall sample{'s' if cut > 1 else ''} > 3 × p99 not drawn"
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.25)
    return fig
