"""Handlers of convolutions: Conv1D/2D/3D (grouped too), transposed, depthwise, separable."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.common import channels_first, check_channels_last, is_elementwise, repeat_mask
from tf_gpp.handlers.registry import (
    Keep,
    LayerHandler,
    NodeContext,
    WeightMasks,
    prod,
    register_handler,
)


def _output_atoms(ctx: NodeContext, filters: int) -> np.ndarray:
    frozen = None
    if not is_elementwise(ctx.config.get("activation")):
        frozen = ctx.reason("has an activation that mixes its output channels")
    return ctx.new_atoms(filters, frozen=frozen)


def _couple_groups(ctx: NodeContext, atoms: np.ndarray, groups: int) -> None:
    """Grouped conv: channel i of every group is pruned together, keeping groups equal."""
    per = len(atoms) // groups
    for g in range(1, groups):
        ctx.unify(atoms[:per], atoms[g * per : (g + 1) * per])


class _FiltersHandler(LayerHandler):
    """Layers whose ``filters`` output channels are new (prunable) channels."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        frozen = check_channels_last(ctx)
        if frozen is not None:
            return frozen
        return [_output_atoms(ctx, int(ctx.config["filters"]))]

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        config["filters"] = int(keep.outputs[0].sum())
        return config


@register_handler(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
class ConvHandler(_FiltersHandler):
    """Kernel (*k, in/groups, filters); ``groups>1`` couples the same index in every group."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        atoms = super().propagate(ctx)
        groups = int(ctx.config.get("groups", 1) or 1)
        if groups > 1 and not channels_first(ctx.config):
            _couple_groups(ctx, ctx.in_atoms[0], groups)
            _couple_groups(ctx, atoms[0], groups)
        return atoms

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        groups = int(getattr(layer, "groups", 1) or 1)
        in_mask = keep.inputs[0][: len(keep.inputs[0]) // groups]
        return {"kernel": {-2: in_mask, -1: keep.outputs[0]}, "bias": {0: keep.outputs[0]}}

    def macs(self, layer, config, in_shapes, out_shapes) -> int:
        groups = int(config.get("groups", 1) or 1)
        cin = int(in_shapes[0][-1])
        return prod(out_shapes[0][1:-1]) * prod(config["kernel_size"]) * (cin // groups) * int(config["filters"])


@register_handler(keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
class ConvTransposeHandler(_FiltersHandler):
    """Kernel (*k, filters, in)."""

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        return {"kernel": {-2: keep.outputs[0], -1: keep.inputs[0]}, "bias": {0: keep.outputs[0]}}

    def macs(self, layer, config, in_shapes, out_shapes) -> int:
        cin = int(in_shapes[0][-1])
        return prod(in_shapes[0][1:-1]) * prod(config["kernel_size"]) * cin * int(config["filters"])


@register_handler(keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
class DepthwiseHandler(LayerHandler):
    """Kernel (*k, in, multiplier): output channel c*m + k belongs to input channel c."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        frozen = check_channels_last(ctx)
        if frozen is not None:
            return frozen
        m = int(ctx.config.get("depth_multiplier", 1))
        out = np.repeat(ctx.in_atoms[0], m)
        if not is_elementwise(ctx.config.get("activation")):
            ctx.freeze(out, ctx.reason("has an activation that mixes its output channels"))
        return [out]

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        m = int(layer.depth_multiplier)
        return {"kernel": {-2: keep.inputs[0]}, "bias": {0: repeat_mask(keep.inputs[0], m)}}

    def macs(self, layer, config, in_shapes, out_shapes) -> int:
        return prod(out_shapes[0][1:]) * prod(config["kernel_size"])


@register_handler(keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
class SeparableConvHandler(_FiltersHandler):
    """Depthwise (*k, in, m) then pointwise (1.., in*m, filters)."""

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        m = int(layer.depth_multiplier)
        return {
            "depthwise_kernel": {-2: keep.inputs[0]},
            "pointwise_kernel": {-2: repeat_mask(keep.inputs[0], m), -1: keep.outputs[0]},
            "bias": {0: keep.outputs[0]},
        }

    def macs(self, layer, config, in_shapes, out_shapes) -> int:
        m = int(config.get("depth_multiplier", 1))
        cin = int(in_shapes[0][-1])
        spatial = prod(out_shapes[0][1:-1])
        return spatial * cin * m * (prod(config["kernel_size"]) + int(config["filters"]))
