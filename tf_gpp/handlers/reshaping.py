"""Handlers of layers that move channels around: Flatten, Reshape, Permute.

Flatten (channels_last) lays a (…, C) tensor out as position*C + c, so output
position p carries input channel p mod C: the channel atoms are tiled. A
Reshape that keeps the last axis (e.g. (C,) -> (1, 1, C) in squeeze-excite, or
(H, W, C) -> (H*W, C)) passes channels through; one that flattens everything
into one axis tiles them like Flatten; any other Reshape mixes channels with
other axes and is frozen. Permute passes channels through only if the last
axis stays last.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.common import check_channels_last
from tf_gpp.handlers.registry import Keep, LayerHandler, NodeContext, register_handler


def _known(shape: tuple) -> bool:
    return all(d is not None for d in shape)


@register_handler(keras.layers.Flatten)
class FlattenHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        frozen = check_channels_last(ctx)
        if frozen is not None:
            return frozen
        spatial = ctx.in_shapes[0][1:-1]
        if not _known(spatial):
            return ctx.freeze_all(ctx.reason("flattens axes of unknown size"))
        return [np.tile(ctx.in_atoms[0], int(np.prod(spatial, dtype=np.int64)))]


@register_handler(keras.layers.Reshape)
class ReshapeHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        src, dst = ctx.in_shapes[0][1:], ctx.out_shapes[0][1:]
        if src and dst and src[-1] is not None and src[-1] == dst[-1]:
            return [ctx.in_atoms[0]]
        if len(dst) == 1 and _known(src) and len(src) > 1:
            return [np.tile(ctx.in_atoms[0], int(np.prod(src[:-1], dtype=np.int64)))]
        return ctx.freeze_all(ctx.reason("reshapes the channel axis together with other axes"))

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        target = list(config["target_shape"])
        if target[-1] != -1:
            kept_in, total_in = int(keep.inputs[0].sum()), len(keep.inputs[0])
            target[-1] = int(target[-1]) * kept_in // total_in
        config["target_shape"] = tuple(target)
        return config


@register_handler(keras.layers.Permute)
class PermuteHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        dims = list(ctx.config["dims"])
        if dims[-1] == len(dims):
            return [ctx.in_atoms[0]]
        return ctx.freeze_all(ctx.reason("moves the channel axis"))
