"""Opt-in: LayerNormalization / RMSNormalization over the last axis as channel-wise layers.

By default these layers freeze their input channels (see
:mod:`tf_gpp.handlers.normalization`): their statistics are taken across channels,
so removing a channel, even an all-zero one, changes every other output. Inside
:func:`approximate_normalization` they pass channels through instead (``gamma``,
``beta`` and ``scale`` sliced), so a transformer's residual stream (every ``Add``,
every norm and every projection reading or writing it) can be pruned as one group.

The result is *not* the zeroed original: with ``C`` channels of which ``K`` are kept
and the removed ones exactly zero, the pruned norm computes its statistics over the
``K`` kept channels, the original over all ``C``:

* LayerNormalization: mean ``mu_K = (C/K) mu_C`` and ``E_K[x^2] = (C/K) E_C[x^2]``;
* RMSNormalization: ``rms_K^2 = (C/K) rms_C^2``, so (for a negligible epsilon) every
  kept output is the zeroed original's times ``sqrt(K/C)``.

Use it inside the context for both the analysis and the rebuild::

    with tf_gpp.handlers.layernorm.approximate_normalization():
        slim = tf_gpp.prune_channels(model, {"embed": [3, 7]})

then fine-tune (compress does) to recover the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.registry import (
    Keep,
    LayerHandler,
    NodeContext,
    WeightMasks,
    get_handler,
    register_handler,
)

NORM_TYPES: tuple[type, ...] = tuple(
    t for t in (keras.layers.LayerNormalization, getattr(keras.layers, "RMSNormalization", None)) if t is not None
)


def _axes(axis: Any, rank: int) -> set[int]:
    axes = axis if isinstance(axis, list | tuple) else [axis]
    return {int(a) % rank for a in axes}


class ApproximateChannelNormHandler(LayerHandler):
    """A norm over the last axis alone, with its per-channel weights sliced (approximate)."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        rank = len(ctx.in_shapes[0])
        axes = _axes(ctx.config.get("axis", -1), rank)
        if rank - 1 in axes and axes != {rank - 1}:
            ctx.freeze(ctx.in_atoms[0], ctx.reason("normalizes across channels and other axes together"))
        return [ctx.in_atoms[0]]

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        rank = len(keep.in_shapes[0])
        if _axes(getattr(layer, "axis", -1), rank) != {rank - 1}:
            return {}
        m = {0: keep.inputs[0]}
        return {"gamma": m, "beta": m, "scale": m}


@contextmanager
def approximate_normalization() -> Iterator[None]:
    """Within this block, LayerNormalization/RMSNormalization over the last axis are channel-wise.

    Analyse *and* rebuild inside the block (``channel_groups``, ``prune_channels``,
    ``compress``): outside it the norms freeze their channels again.
    """
    previous = {t: get_handler(t()) for t in NORM_TYPES}
    handler = ApproximateChannelNormHandler()
    try:
        register_handler(*NORM_TYPES)(handler)
        yield
    finally:
        for t, h in previous.items():
            register_handler(t)(h)
