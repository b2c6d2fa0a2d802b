"""Pruning: planning which units go, one-step ``Pruner``, masks and a callback for pruning inside
``fit`` (``prunable`` -> ``PruningCallback`` -> ``strip``), and the iterative compress driver."""

from tf_gpp.prune import schedules
from tf_gpp.prune.callback import PruningCallback
from tf_gpp.prune.compress import CompressResult, RoundRecord, compress
from tf_gpp.prune.config import CompressConfig
from tf_gpp.prune.masking import ChannelMask, mask_channels, masked_view, prunable, strip
from tf_gpp.prune.planner import (
    Constraints,
    estimate_cost,
    group_scores,
    plan_global,
    plan_threshold,
)
from tf_gpp.prune.pruner import Pruner, PruneResult
from tf_gpp.prune.schedules import Geometric, PerLayerThreshold, Threshold, register_schedule
from tf_gpp.training import Distiller

__all__ = [
    "ChannelMask",
    "CompressConfig",
    "CompressResult",
    "Constraints",
    "Distiller",
    "Geometric",
    "PerLayerThreshold",
    "PruneResult",
    "Pruner",
    "PruningCallback",
    "RoundRecord",
    "Threshold",
    "compress",
    "estimate_cost",
    "group_scores",
    "mask_channels",
    "masked_view",
    "plan_global",
    "plan_threshold",
    "prunable",
    "register_schedule",
    "schedules",
    "strip",
]
