"""Building blocks shared by the handlers: channel axis, activations, identity."""

from __future__ import annotations

from typing import Any

import numpy as np

from tf_gpp.handlers.registry import LayerHandler, NodeContext

# Activations applied element by element: removing a channel leaves the others unchanged.
ELEMENTWISE_ACTIVATIONS = frozenset(
    {
        "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
        "sigmoid", "hard_sigmoid", "log_sigmoid", "tanh", "hard_tanh", "tanh_shrink",
        "swish", "silu", "hard_silu", "hard_swish", "mish", "softplus", "softsign",
        "exponential", "sparse_plus", "squareplus", "soft_shrink", "hard_shrink",
        "threshold",
    }
)


def activation_name(value: Any) -> str | None:
    """Name of a serialized activation, or None if it is a custom object."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("module") in ("keras.activations", "builtins"):
        return value.get("config") if isinstance(value.get("config"), str) else None
    return None


def is_elementwise(value: Any) -> bool:
    return activation_name(value) in ELEMENTWISE_ACTIVATIONS


def channels_first(config: dict) -> bool:
    return config.get("data_format") == "channels_first"


def on_last_axis(axis: Any, rank: int) -> bool:
    """Whether ``axis`` (int or list) includes the last axis of a rank-``rank`` tensor."""
    axes = axis if isinstance(axis, list | tuple) else [axis]
    return any(int(a) % rank == rank - 1 for a in axes)


def check_channels_last(ctx: NodeContext) -> list[np.ndarray] | None:
    """Opaque outputs when a layer runs channels_first (not handled), else None."""
    if channels_first(ctx.config):
        return ctx.freeze_all(ctx.reason("uses data_format='channels_first', which tf_gpp does not rewrite"))
    return None


class IdentityHandler(LayerHandler):
    """Channel-wise layers with no per-channel state: output channel i is input channel i."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        frozen = check_channels_last(ctx)
        if frozen is not None:
            return frozen
        return [ctx.in_atoms[0]]


def repeat_mask(mask: np.ndarray, times: int) -> np.ndarray:
    """Mask of channel c*times + k, for all k, from a mask over c."""
    return np.repeat(mask, times)
