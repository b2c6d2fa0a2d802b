"""Grow step: Inception modules, network specs, warm-started growth under a budget,
and the grow -> push -> prune pipeline."""

from tf_gpp.grow.cost import Cost, model_cost
from tf_gpp.grow.errors import GrowError
from tf_gpp.grow.grower import ACTIONS, BASELINES, Grower, GrowResult, grow
from tf_gpp.grow.inception import build_inception, conv_bn_relu, inception_module, reduction_module
from tf_gpp.grow.pipeline import GPPResult, as_pipelines, compress_grown, grow_push_prune
from tf_gpp.grow.spec import (
    NORMAL_WIDTHS,
    REDUCTION_WIDTHS,
    InceptionSpec,
    ModuleSpec,
    default_start_spec,
    normal_widths,
    reduction_widths,
)
from tf_gpp.grow.transfer import inbound_layers, transfer_weights

__all__ = [
    "ACTIONS",
    "BASELINES",
    "NORMAL_WIDTHS",
    "REDUCTION_WIDTHS",
    "Cost",
    "GPPResult",
    "GrowError",
    "GrowResult",
    "Grower",
    "InceptionSpec",
    "ModuleSpec",
    "as_pipelines",
    "build_inception",
    "compress_grown",
    "conv_bn_relu",
    "default_start_spec",
    "grow",
    "grow_push_prune",
    "inbound_layers",
    "inception_module",
    "model_cost",
    "normal_widths",
    "reduction_module",
    "reduction_widths",
    "transfer_weights",
]
