"""Handlers of normalization and rescaling layers.

* BatchNormalization normalizes each channel on its own: channels pass through,
  its four per-channel vectors are sliced.
* LayerNormalization, RMSNormalization, UnitNormalization over the channel axis
  and GroupNormalization compute statistics *across* channels: removing a
  channel, even an all-zero one, changes every other output. Their inputs are
  frozen (documented choice: correctness first; prune upstream of them only
  where a channel-wise layer separates them). Over other axes they are
  channel-wise and pass channels through.
* Rescaling with scalar scale/offset passes channels through; per-channel
  Rescaling and Normalization (usually right after the model input, whose
  channels are frozen anyway) freeze their input.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.common import on_last_axis
from tf_gpp.handlers.registry import (
    Keep,
    LayerHandler,
    NodeContext,
    OpaqueHandler,
    WeightMasks,
    register_handler,
)


def _rank(ctx: NodeContext) -> int:
    return len(ctx.in_shapes[0])


@register_handler(keras.layers.BatchNormalization)
class BatchNormHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        return [ctx.in_atoms[0]]

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        if not on_last_axis(layer.axis, len(keep.in_shapes[0])):
            return {}
        m = {0: keep.inputs[0]}
        return {"gamma": m, "beta": m, "moving_mean": m, "moving_variance": m}


class _StatsAcrossAxisHandler(LayerHandler):
    """Normalizes over ``axis``: channel-mixing when that includes the channel axis."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if on_last_axis(ctx.config.get("axis", -1), _rank(ctx)):
            ctx.freeze(
                ctx.in_atoms[0],
                ctx.reason("normalizes across channels: removing any channel changes the others"),
            )
        return [ctx.in_atoms[0]]


register_handler(keras.layers.LayerNormalization, keras.layers.UnitNormalization)(
    _StatsAcrossAxisHandler()
)
if hasattr(keras.layers, "RMSNormalization"):
    register_handler(keras.layers.RMSNormalization)(_StatsAcrossAxisHandler())

register_handler(keras.layers.GroupNormalization)(
    OpaqueHandler("normalizes over groups of channels: removing any channel changes the others")
)
register_handler(keras.layers.Normalization)(
    OpaqueHandler("holds per-channel statistics of the input data")
)


@register_handler(keras.layers.Rescaling)
class RescalingHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        scalar = all(
            isinstance(ctx.config.get(k, 0.0), int | float) for k in ("scale", "offset")
        )
        if not scalar:
            ctx.freeze(ctx.in_atoms[0], ctx.reason("has per-channel scale/offset"))
        return [ctx.in_atoms[0]]
