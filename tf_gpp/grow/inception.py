"""Inception building blocks and the functional model built from an :class:`InceptionSpec`.

Layer names are deterministic: ``stem``, ``<module>_b<branch>_<op>`` (e.g.
``m3_b2_conv3x3``, with ``_bn``/``_relu`` suffixes for the BatchNormalization
and ReLU after each conv), ``<module>_concat``, ``gap``, ``dropout``,
``classifier``. Branches are concatenated on the channel axis, so any widths
work; nothing aligns branch widths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tf_gpp.grow.spec import InceptionSpec, ModuleSpec


def conv_bn_relu(
    x: Any,
    filters: int,
    kernel_size: int,
    name: str,
    *,
    strides: int = 1,
    bn_momentum: float = 0.9,
    kernel_initializer: str = "he_normal",
) -> Any:
    """``Conv2D(name, 'same', no bias) -> BatchNormalization(name_bn) -> ReLU(name_relu)``."""
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer=kernel_initializer, name=name,
    )(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def inception_module(
    x: Any,
    widths: Sequence[int],
    name: str,
    *,
    reduction: bool = False,
    bn_momentum: float = 0.9,
    kernel_initializer: str = "he_normal",
) -> Any:
    """Apply one Inception module to the Keras tensor ``x``.

    Normal module, ``widths = (b1, b2_reduce, b2, b3_reduce, b3, b4)``, stride 1::

        b1: 1x1(b1)
        b2: 1x1(b2_reduce) -> 3x3(b2)
        b3: 1x1(b3_reduce) -> 3x3(b3) -> 3x3(b3)
        b4: maxpool 3x3 /1 -> 1x1(b4)

    Reduction module (``reduction=True``), ``widths = (b1, b2_reduce, b2)``, stride 2::

        b1: 3x3/2(b1)
        b2: 1x1(b2_reduce) -> 3x3(b2) -> 3x3/2(b2)
        b3: maxpool 3x3 /2 (passes the input channels through)

    Every conv is followed by BatchNormalization and ReLU; the branches are
    concatenated on channels, giving ``b1 + b2 + b3 + b4`` channels (normal) or
    ``b1 + b2 + in_channels`` (reduction).

    Raises:
        GrowError: for an invalid name or widths.
    """
    spec = ModuleSpec(name, tuple(widths), reduction)
    w = spec.widths
    kw = dict(bn_momentum=bn_momentum, kernel_initializer=kernel_initializer)
    if spec.reduction:
        b1 = conv_bn_relu(x, w[0], 3, f"{name}_b1_conv3x3", strides=2, **kw)
        b2 = conv_bn_relu(x, w[1], 1, f"{name}_b2_conv1x1", **kw)
        b2 = conv_bn_relu(b2, w[2], 3, f"{name}_b2_conv3x3a", **kw)
        b2 = conv_bn_relu(b2, w[2], 3, f"{name}_b2_conv3x3b", strides=2, **kw)
        b3 = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_b3_pool")(x)
        branches = [b1, b2, b3]
    else:
        b1 = conv_bn_relu(x, w[0], 1, f"{name}_b1_conv1x1", **kw)
        b2 = conv_bn_relu(x, w[1], 1, f"{name}_b2_conv1x1", **kw)
        b2 = conv_bn_relu(b2, w[2], 3, f"{name}_b2_conv3x3", **kw)
        b3 = conv_bn_relu(x, w[3], 1, f"{name}_b3_conv1x1", **kw)
        b3 = conv_bn_relu(b3, w[4], 3, f"{name}_b3_conv3x3a", **kw)
        b3 = conv_bn_relu(b3, w[4], 3, f"{name}_b3_conv3x3b", **kw)
        b4 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(x)
        b4 = conv_bn_relu(b4, w[5], 1, f"{name}_b4_conv1x1", **kw)
        branches = [b1, b2, b3, b4]
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)


def reduction_module(x: Any, widths: Sequence[int], name: str, **kwargs: Any) -> Any:
    """Shorthand for ``inception_module(x, widths, name, reduction=True)``."""
    return inception_module(x, widths, name, reduction=True, **kwargs)


def build_inception(spec: InceptionSpec | dict[str, Any]) -> keras.Model:
    """Build the functional Keras model described by ``spec``.

    Stem conv-BN-ReLU, the modules in order, ``GlobalAveragePooling2D`` (the
    feature layer GPP analyses), optional ``Dropout``, and a ``Dense`` head that
    outputs logits (``classifier_activation=None``, the default: compile with
    ``from_logits=True``) or softmax probabilities. The model is named
    ``spec.model_name`` (``"Inception-<depth>"``).
    """
    if isinstance(spec, dict):
        spec = InceptionSpec.from_dict(spec)
    inputs = keras.Input(spec.input_shape, name="input")
    x = conv_bn_relu(
        inputs, spec.stem_filters, spec.stem_kernel, "stem",
        strides=spec.stem_strides, bn_momentum=spec.bn_momentum,
    )
    for m in spec.modules:
        x = inception_module(x, m.widths, m.name, reduction=m.reduction, bn_momentum=spec.bn_momentum)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if spec.dropout:
        x = keras.layers.Dropout(spec.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        spec.num_classes, activation=spec.classifier_activation, name="classifier"
    )(x)
    return keras.Model(inputs, outputs, name=spec.model_name)
