"""Handlers of layers that create channels from a full matrix: Dense, Embedding, Input."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.common import is_elementwise
from tf_gpp.handlers.registry import (
    Keep,
    LayerHandler,
    NodeContext,
    WeightMasks,
    prod,
    register_handler,
)


@register_handler(keras.layers.InputLayer)
class InputHandler(LayerHandler):
    """Model inputs: their channels are fixed by the data, never pruned."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        shape = ctx.out_shapes[0]
        n = int(shape[-1]) if shape and shape[-1] is not None else 0
        return [ctx.new_atoms(n, frozen=ctx.reason("is a model input"))]


@register_handler(keras.layers.Dense)
class DenseHandler(LayerHandler):
    """Dense on the last axis (any rank): kernel (in, units)."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if ctx.config.get("lora_rank"):
            return ctx.freeze_all(ctx.reason("has LoRA weights, which tf_gpp does not slice"))
        units = int(ctx.config["units"])
        frozen = None
        if not is_elementwise(ctx.config.get("activation")):
            frozen = ctx.reason("has an activation that mixes its output channels")
        return [ctx.new_atoms(units, frozen=frozen)]

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        config["units"] = int(keep.outputs[0].sum())
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        return {"kernel": {0: keep.inputs[0], 1: keep.outputs[0]}, "bias": {0: keep.outputs[0]}}

    def macs(self, layer, config, in_shapes, out_shapes) -> int:
        shape = in_shapes[0]
        return prod(shape[1:]) * int(config["units"])


@register_handler(keras.layers.Embedding)
class EmbeddingHandler(LayerHandler):
    """Embedding: integer indices in, ``output_dim`` new channels out."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if ctx.config.get("lora_rank"):
            return ctx.freeze_all(ctx.reason("has LoRA weights, which tf_gpp does not slice"))
        for a in ctx.in_atoms:
            ctx.freeze(a, ctx.reason("takes integer indices"))
        return [ctx.new_atoms(int(ctx.config["output_dim"]))]

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        config["output_dim"] = int(keep.outputs[0].sum())
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        return {"embeddings": {1: keep.outputs[0]}}
