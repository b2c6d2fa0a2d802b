"""Handlers of normalization and rescaling layers.

* BatchNormalization normalizes each channel on its own: channels pass through,
  its four per-channel vectors are sliced.
* LayerNormalization, RMSNormalization and UnitNormalization over the channel axis
  compute statistics *across* channels: removing a channel, even an all-zero one,
  changes every other output. Their inputs are frozen (documented choice:
  correctness first; prune upstream of them only where a channel-wise layer
  separates them; :mod:`tf_gpp.handlers.layernorm` has the opt-in approximation).
  Over other axes they are channel-wise and pass channels through.
* GroupNormalization's statistics stay within a group: its groups are the units
  (whole groups removed, exact).
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

@register_handler(keras.layers.GroupNormalization)
class GroupNormHandler(LayerHandler):
    """Whole groups of channels as units: the channels of one group are coupled, so a group
    is removed entirely and the others keep their statistics (exact); ``groups`` shrinks and
    ``gamma``/``beta`` are sliced. Over another axis than the channels it is channel-wise."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        atoms = ctx.in_atoms[0]
        if not on_last_axis(ctx.config.get("axis", -1), _rank(ctx)):
            return [atoms]
        groups = int(ctx.config["groups"])
        per = len(atoms) // groups
        firsts = atoms[::per]
        for k in range(1, per):  # channel k of every group joins the group's first channel
            ctx.unify(firsts, atoms[k::per])
        return [atoms]

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        if not on_last_axis(config.get("axis", -1), len(keep.in_shapes[0])):
            return config
        mask = keep.inputs[0]
        per = len(mask) // int(config["groups"])
        kept = mask.reshape(-1, per)
        if not (kept.all(axis=1) | ~kept.any(axis=1)).all():  # the coupling above prevents this
            raise ValueError(f"GroupNormalization {layer.name!r}: a group would lose only part of its channels")
        config["groups"] = int(kept.all(axis=1).sum())
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        if not on_last_axis(layer.axis, len(keep.in_shapes[0])):
            return {}
        m = {0: keep.inputs[0]}
        return {"gamma": m, "beta": m}


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
