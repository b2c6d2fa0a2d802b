"""Grow step: Inception modules, network specs, warm-started growth under a budget.

The grow -> push -> prune pipeline (:func:`tf_gpp.grow_push_prune`) lives above this package
and :mod:`tf_gpp.prune`, in :mod:`tf_gpp.gpp`."""

from tf_gpp.grow.cost import Cost, model_cost
from tf_gpp.grow.errors import GrowError
from tf_gpp.grow.grower import ACTIONS, BASELINES, Grower, GrowResult, grow
from tf_gpp.grow.inception import build_inception, conv_bn_relu, inception_module, reduction_module
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
    "GrowError",
    "GrowResult",
    "Grower",
    "InceptionSpec",
    "ModuleSpec",
    "build_inception",
    "conv_bn_relu",
    "default_start_spec",
    "grow",
    "inbound_layers",
    "inception_module",
    "model_cost",
    "normal_widths",
    "reduction_module",
    "reduction_widths",
    "transfer_weights",
]
