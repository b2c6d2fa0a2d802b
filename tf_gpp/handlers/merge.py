"""Handlers of merge layers: Add/Subtract/Multiply/Average/Maximum/Minimum, Concatenate.

Element-wise merges couple channel i of every input (broadcast inputs of width
1, as the gate of a squeeze-excite block, are frozen). Concatenate on the
channel axis places its inputs' channels at offsets; on any other axis all
inputs share the channel axis, so their channels are coupled.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_gpp.handlers.common import on_last_axis
from tf_gpp.handlers.elementwise import merge_atoms
from tf_gpp.handlers.registry import LayerHandler, NodeContext, register_handler


@register_handler(
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
class ElementwiseMergeHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        return merge_atoms(ctx)


@register_handler(keras.layers.Concatenate)
class ConcatenateHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        rank = len(ctx.out_shapes[0])
        if on_last_axis(ctx.config.get("axis", -1), rank):
            return [np.concatenate(ctx.in_atoms)]
        first = ctx.in_atoms[0]
        for a in ctx.in_atoms[1:]:
            if len(a) != len(first):
                return ctx.freeze_all(ctx.reason("joins inputs of different channel counts"))
            ctx.unify(first, a)
        return [first]
