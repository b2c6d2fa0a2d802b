"""Pruning: planning which units go, and the iterative compress driver."""

from tf_gpp.prune.compress import CompressResult, RoundRecord, compress
from tf_gpp.prune.distill import Distiller
from tf_gpp.prune.planner import (
    Constraints,
    estimate_cost,
    group_scores,
    plan_global,
    plan_threshold,
)

__all__ = [
    "CompressResult",
    "Constraints",
    "Distiller",
    "RoundRecord",
    "compress",
    "estimate_cost",
    "group_scores",
    "plan_global",
    "plan_threshold",
]
