"""Edge inference: compression techniques, recipes, honest measurement and constraint search.

A lazy face (``edgeintel.lazy``): each name below loads its module (torch, ONNX Runtime)
on first use; the techniques register in ``TECHNIQUES`` when first named
(``inference/base.py`` provides their names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeintel.lazy import lazy_face

if TYPE_CHECKING:
    from edgeintel.inference.base import (
        TECHNIQUES,
        ArrayData,
        CompressContext,
        Finetuner,
        StageKind,
    )
    from edgeintel.inference.compact import CompactConfig, separable_factors, to_separable
    from edgeintel.inference.compress import CompressionResult, StageResult, compress
    from edgeintel.inference.distill import DistillConfig, distill_train, distillation_loss
    from edgeintel.inference.lowrank import (
        LowRankConfig,
        choose_rank,
        factorize_conv,
        factorize_linear,
        low_rank,
        reconstruction_error,
        truncated_svd,
    )
    from edgeintel.inference.measure import (
        MeasureConfig,
        Measurement,
        count_macs,
        count_onnx_params,
        estimate_peak_memory,
        load_onnx,
        measure_onnx,
        measure_torch_latency,
    )
    from edgeintel.inference.prune import (
        PruneStructuredConfig,
        PruneUnstructuredConfig,
        prune_channels,
        prune_unstructured,
        sparsity,
    )
    from edgeintel.inference.qat import (
        QATConfig,
        WeightFakeQuant,
        fake_quant_weight,
        prepare_qat,
        qat_finetune,
        strip_qat,
    )
    from edgeintel.inference.quantize import (
        QuantizeDynamicConfig,
        QuantizeStaticConfig,
        quantize_dynamic_onnx,
        quantize_static_onnx,
    )
    from edgeintel.inference.recipe import (
        Recipe,
        RecipeStep,
        load_recipe,
        make_recipe,
        parse_recipe,
    )
    from edgeintel.inference.search import (
        Budget,
        BudgetError,
        Candidate,
        Objective,
        SearchResult,
        default_search_space,
        pareto_front,
        run_candidates,
        search,
        select,
    )
    from edgeintel.latency import LatencyStats, measure_latency, scale_latency

__all__ = [
    "TECHNIQUES",
    "ArrayData",
    "Budget",
    "BudgetError",
    "Candidate",
    "CompactConfig",
    "CompressContext",
    "CompressionResult",
    "DistillConfig",
    "Finetuner",
    "LatencyStats",
    "LowRankConfig",
    "MeasureConfig",
    "Measurement",
    "Objective",
    "PruneStructuredConfig",
    "PruneUnstructuredConfig",
    "QATConfig",
    "QuantizeDynamicConfig",
    "QuantizeStaticConfig",
    "Recipe",
    "RecipeStep",
    "SearchResult",
    "StageKind",
    "StageResult",
    "WeightFakeQuant",
    "choose_rank",
    "compress",
    "count_macs",
    "count_onnx_params",
    "default_search_space",
    "distill_train",
    "distillation_loss",
    "estimate_peak_memory",
    "factorize_conv",
    "factorize_linear",
    "fake_quant_weight",
    "load_onnx",
    "load_recipe",
    "low_rank",
    "make_recipe",
    "measure_latency",
    "measure_onnx",
    "measure_torch_latency",
    "pareto_front",
    "parse_recipe",
    "prepare_qat",
    "prune_channels",
    "prune_unstructured",
    "qat_finetune",
    "quantize_dynamic_onnx",
    "quantize_static_onnx",
    "reconstruction_error",
    "run_candidates",
    "scale_latency",
    "search",
    "select",
    "separable_factors",
    "sparsity",
    "strip_qat",
    "to_separable",
    "truncated_svd",
]

__getattr__, __dir__ = lazy_face(__name__, __file__)
