"""Edge inference: compression techniques, recipes, honest measurement and constraint search."""

from edgeintel.inference import compact, distill, lowrank, prune, quantize  # noqa: F401 (register)
from edgeintel.inference.base import COMPRESSORS, ArrayData, CompressContext, StageKind
from edgeintel.inference.compact import CompactConfig, separable_factors, to_separable
from edgeintel.inference.compress import CompressionResult, StageResult, compress
from edgeintel.inference.distill import DistillConfig, distill_train, distillation_loss
from edgeintel.inference.latency import LatencyStats, measure_latency, scale_latency
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
from edgeintel.inference.quantize import (
    QuantizeDynamicConfig,
    QuantizeStaticConfig,
    quantize_dynamic_onnx,
    quantize_static_onnx,
)
from edgeintel.inference.recipe import Recipe, RecipeStep, load_recipe, make_recipe, parse_recipe
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

__all__ = [
    "COMPRESSORS",
    "ArrayData",
    "Budget",
    "BudgetError",
    "Candidate",
    "CompactConfig",
    "CompressContext",
    "CompressionResult",
    "DistillConfig",
    "LatencyStats",
    "LowRankConfig",
    "MeasureConfig",
    "Measurement",
    "Objective",
    "PruneStructuredConfig",
    "PruneUnstructuredConfig",
    "QuantizeDynamicConfig",
    "QuantizeStaticConfig",
    "Recipe",
    "RecipeStep",
    "SearchResult",
    "StageKind",
    "StageResult",
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
    "load_onnx",
    "load_recipe",
    "low_rank",
    "make_recipe",
    "measure_latency",
    "measure_onnx",
    "measure_torch_latency",
    "pareto_front",
    "parse_recipe",
    "prune_channels",
    "prune_unstructured",
    "quantize_dynamic_onnx",
    "quantize_static_onnx",
    "reconstruction_error",
    "run_candidates",
    "scale_latency",
    "search",
    "select",
    "separable_factors",
    "sparsity",
    "to_separable",
    "truncated_svd",
]
