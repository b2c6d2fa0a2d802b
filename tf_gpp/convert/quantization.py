"""Quantization modes of :func:`tf_gpp.convert.to_tflite`: one registry, one entry per mode.

A mode says how to configure the TFLite converter, whether it needs calibration data and
whether its error is judged by predictions rather than by an absolute tolerance. Adding a
mode is one :func:`register` call; ``to_tflite``, :func:`~tf_gpp.convert.verify` and the
command line's ``--quantization`` choices read this registry.

>>> from tf_gpp.convert import quantization
>>> quantization.get("int8").needs_calibration
True
>>> quantization.names()
('float16', 'dynamic', 'int8')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from tf_gpp.convert.errors import ConversionError

Configure = Callable[[Any, Any, bool], None]
"""``configure(converter, representative_dataset, int8_io)``: set the converter's options."""


@dataclass(frozen=True)
class QuantizationMode:
    """One way of quantizing a model at conversion.

    Attributes:
        name: the identifier (``None`` for plain float32).
        description: one line for help texts.
        configure: sets the ``tf.lite.TFLiteConverter`` options; gets the converter, the
            representative-dataset generator (``None`` unless ``needs_calibration``) and
            ``int8_io``.
        needs_calibration: the mode needs ``representative_data``.
        lossy: predictions, not an absolute tolerance, judge the converted model.
        supports_int8_io: ``int8_io=True`` is meaningful for this mode.
    """

    name: str | None
    description: str
    configure: Configure
    needs_calibration: bool = False
    lossy: bool = True
    supports_int8_io: bool = False


def _float32(converter: Any, representative: Any, int8_io: bool) -> None:
    """Nothing to set: builtin ops, float32 weights and activations."""


def _float16(converter: Any, representative: Any, int8_io: bool) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter: Any, representative: Any, int8_io: bool) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(converter: Any, representative: Any, int8_io: bool) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


FLOAT32 = QuantizationMode(None, "float32 weights and activations (no quantization)", _float32, lossy=False)

_REGISTRY: dict[str | None, QuantizationMode] = {None: FLOAT32}
_ALIASES = {"float32": None, "none": None}


def register(mode: QuantizationMode) -> QuantizationMode:
    """Add (or replace) a mode; returns it. ``mode.name`` must be a non-empty string."""
    if not isinstance(mode, QuantizationMode) or not isinstance(mode.name, str) or not mode.name:
        raise ConversionError("register() takes a QuantizationMode with a non-empty string name.")
    _REGISTRY[mode.name] = mode
    return mode


register(QuantizationMode("float16", "float16 weights, float32 activations (half the size)", _float16))
register(QuantizationMode("dynamic", "int8 weights, float activations (no calibration data)", _dynamic))
register(QuantizationMode("int8", "full-integer int8 (needs representative data)", _int8,
                          needs_calibration=True, supports_int8_io=True))


def unregister(name: str) -> None:
    """Remove a registered mode (plain float32 cannot be removed)."""
    if name is None or name not in _REGISTRY:
        raise ConversionError(f"no registered quantization mode {name!r}; registered: {names()}.")
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """The registered quantization names (plain float32, ``None``, excluded)."""
    return tuple(n for n in _REGISTRY if n is not None)


def get(identifier: str | QuantizationMode | None) -> QuantizationMode:
    """The mode called ``identifier`` (``None``/``"float32"``: no quantization), or an instance as is.

    Raises:
        ConversionError: an unknown name, listing the valid ones.
    """
    if isinstance(identifier, QuantizationMode):
        return identifier
    key = _ALIASES.get(identifier, identifier) if isinstance(identifier, str) else identifier
    if key in _REGISTRY and (key is None or isinstance(key, str)):
        return _REGISTRY[key]
    valid = ", ".join(repr(m) for m in (None, *names()))
    raise ConversionError(f"quantization={identifier!r} is not supported; use one of {valid}.")


def is_lossy(kind: str | None) -> bool:
    """Whether a mode (or the kind :func:`~tf_gpp.convert.quantization_kind` reports) is judged
    by predictions; unknown kinds count as lossy."""
    try:
        return get(kind).lossy
    except ConversionError:
        return True
