"""Handlers of layers that act on each channel separately.

Activations, dropout and noise, pooling (global too, with ``keepdims``),
padding, cropping, up-sampling, resizing and spatial augmentations, and Keras
ops applied element by element (``x + 3.0``, ``ops.relu(x)`` in a functional
graph). Output channel i is input channel i.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.common import IdentityHandler, is_elementwise, on_last_axis
from tf_gpp.handlers.registry import Keep, LayerHandler, NodeContext, WeightMasks, register_handler


def _existing(module: Any, names: list[str]) -> list[type]:
    return [getattr(module, n) for n in names if isinstance(getattr(module, n, None), type)]


_CHANNELWISE = [
    "Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization",
    "ReLU", "LeakyReLU", "ELU",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomCrop", "RandomContrast", "RandomBrightness",
    "RepeatVector",
]
register_handler(*_existing(keras.layers, _CHANNELWISE))(IdentityHandler())


@register_handler(keras.layers.Activation)
class ActivationHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if not is_elementwise(ctx.config.get("activation")):
            ctx.freeze(ctx.in_atoms[0], ctx.reason("applies an activation that mixes channels"))
        return [ctx.in_atoms[0]]


@register_handler(keras.layers.Softmax)
class SoftmaxHandler(LayerHandler):
    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if on_last_axis(ctx.config.get("axis", -1), len(ctx.in_shapes[0])):
            ctx.freeze(ctx.in_atoms[0], ctx.reason("normalizes across channels"))
        return [ctx.in_atoms[0]]


@register_handler(keras.layers.PReLU)
class PReLUHandler(LayerHandler):
    """PReLU: ``alpha`` has one slope per channel unless the channel axis is shared."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        return [ctx.in_atoms[0]]

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        rank = len(keep.in_shapes[0])
        shared = layer.shared_axes or []
        if any(int(a) % rank == rank - 1 for a in shared):
            return {}
        return {"alpha": {-1: keep.inputs[0]}}


class ElementwiseOpHandler(LayerHandler):
    """A Keras op in the graph applied element by element (scalars as other arguments)."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if any(not isinstance(a, int | float | bool | str) for a in ctx.extra_args):
            return ctx.freeze_all(ctx.reason("combines its input with a constant array"))
        return merge_atoms(ctx)


def merge_atoms(ctx: NodeContext) -> list[np.ndarray]:
    """Element-wise merge with broadcasting: inputs of full width are coupled;
    a width-1 input broadcast over all channels is frozen."""
    out_shape = ctx.out_shapes[0]
    width = int(out_shape[-1]) if out_shape and out_shape[-1] is not None else 0
    full = [a for a in ctx.in_atoms if len(a) == width]
    if not full or width == 0:
        return ctx.freeze_all(ctx.reason("has inputs whose channels cannot be matched"))
    for a in ctx.in_atoms:
        if len(a) == width:
            ctx.unify(full[0], a)
        else:
            ctx.freeze(a, ctx.reason("broadcasts this input over all channels"))
    return [full[0]]


def _register_ops() -> None:
    try:
        from keras.src.ops import nn as ops_nn
        from keras.src.ops import numpy as ops_np
    except ImportError:  # pragma: no cover - Keras layout changed: ops stay opaque
        return
    numpy_ops = [
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum",
        "Power", "Abs", "Absolute", "Exp", "Log", "Sqrt", "Square", "Negative",
        "Tanh", "Sign", "Clip", "Reciprocal",
    ]
    nn_ops = [
        "Relu", "Relu6", "Sigmoid", "Silu", "Swish", "HardSigmoid", "HardSilu",
        "HardSwish", "Gelu", "Elu", "Selu", "Softplus", "Softsign", "LeakyRelu",
        "Mish", "LogSigmoid", "Celu",
    ]
    types = _existing(ops_np, numpy_ops) + _existing(ops_nn, nn_ops)
    register_handler(*types)(ElementwiseOpHandler())


_register_ops()
