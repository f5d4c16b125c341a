"""Report section of the ``data`` stage: the dataset, the held-out split and the partition."""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup

from edgeintel.report.figures import Figure
from edgeintel.report.sections import RenderContext, kv_table, register_section, table

__all__ = ["device_names", "render_data"]

#: Below this many held-out samples an accuracy's 95 % interval is wider than +-7 points.
SMALL_TEST_SET = 200


def device_names(results: dict[str, Any], n: int) -> list[str]:
    """Device names ``<group>-<i>`` from the topology record, else ``device-<i>``."""
    groups = ((results.get("scenario") or {}).get("topology") or {}).get("device_groups") or []
    names = [f"{g['name']}-{i}" for g in groups for i in range(int(g["count"]))]
    return names if len(names) == n else [f"device-{i}" for i in range(n)]


@register_section("data", title="Data", order=10)
def render_data(data: dict[str, Any], figures: list[Figure], ctx: RenderContext) -> Markup:
    classes = data.get("classes") or []
    n_test = data.get("test_samples")
    part = data.get("partition") or {}
    h = ctx.headline
    h.chance = ctx.chance
    h.fact(
        "data",
        f"{data.get('name')}: {data.get('samples')} samples, {len(classes)} classes "
        f"({data.get('train_samples')} on devices, {n_test} held out for testing)",
    )
    if part:
        alpha = f", alpha {part['alpha']:g}" if part.get("alpha") is not None else ""
        h.fact(
            "partition",
            f"{part.get('kind')}{alpha} over {part.get('devices')} devices, label skew "
            f"{part.get('label_skew', float('nan')):.2f} (0 = every device sees the global mix)",
        )
    std = data.get("standardization")
    if isinstance(std, dict):
        scale = data.get("feature_scale") or {}
        spread = (
            f"; the raw features spanned {scale['ratio']:.3g}x in scale "
            f"({scale.get('widest')!r} vs {scale.get('narrowest')!r})"
            if isinstance(scale.get("ratio"), float) and scale["ratio"] > 1
            else ""
        )
        h.fact(
            "preprocessing",
            f"{str(std.get('kind', '')).replace('_', ' ')} standardisation with statistics of "
            f"the {std.get('fitted_on')} ({std.get('samples')} samples){spread}",
        )
    base = data.get("trivial_baseline")
    if isinstance(base, dict) and base.get("all"):
        metric = str(base.get("metric"))
        h.fact(
            "trivial baselines",
            ", ".join(
                f"{name} {m[metric]:.4g}"
                + (
                    f" ({m['reference_samples']} training samples)"
                    if "reference_samples" in m
                    else ""
                )
                for name, m in base["all"].items()
                if metric in m
            )
            + f" ({metric} on the test split; the model must beat {base.get('best')})",
        )
    for message in data.get("warnings") or []:  # e.g. features on very different scales
        ctx.warn(str(message))
    if isinstance(n_test, int) and 0 < n_test < SMALL_TEST_SET:
        half = 1.96 * math.sqrt(0.25 / n_test)
        ctx.warn(
            f"the test set has only {n_test} samples: an accuracy is uncertain by up to "
            f"±{100 * half:.1f} points (95 % interval), so small differences mean nothing"
        )
    summary = {
        k: v
        for k, v in data.items()
        if k not in ("partition", "class_counts", "classes") and not isinstance(v, list | dict)
    }
    parts = [kv_table(summary, caption="Dataset and split")]
    counts = data.get("class_counts")
    if classes and counts and len(classes) == len(counts):
        parts.append(
            table(
                [{"class": c, "samples": n} for c, n in zip(classes, counts, strict=True)],
                caption="Samples per class",
            )
        )
    if part:
        info = {
            k: v
            for k, v in part.items()
            if k not in ("samples_per_device", "class_counts_per_device")
        }
        parts.append(kv_table(info, caption="Partition across devices"))
        per_dev = part.get("class_counts_per_device") or []
        names = device_names(dict(ctx.results), len(per_dev))
        rows = []
        for name, row in zip(names, per_dev, strict=True):
            rec: dict[str, Any] = {"device": name, "samples": sum(row)}
            rec.update({f"class {c}": n for c, n in zip(classes, row, strict=False)})
            rows.append(rec)
        if rows:
            parts.append(
                table(
                    rows,
                    caption="Training samples per device and class",
                    row_class=lambda r: "muted" if r["samples"] == 0 else "",
                )
            )
    parts.append(ctx.figures(figures))
    return Markup("").join(parts)
