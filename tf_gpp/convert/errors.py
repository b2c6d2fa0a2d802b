"""Errors and warnings of the conversion package."""

from __future__ import annotations

from tf_gpp.errors import TfGppError


class ConversionError(TfGppError, ValueError):
    """A TFLite conversion request is invalid or the converter rejected the model.

    Raised for an unknown ``quantization`` mode, missing calibration data for
    ``"int8"``, an output path that would overwrite the input ``.keras`` file,
    or a model containing ops the TFLite builtin op set cannot express.
    """


class TFLiteFileError(TfGppError, OSError):
    """A ``.tflite`` file is missing, empty, truncated or not a TFLite flatbuffer."""


class AccuracyDegradationWarning(UserWarning):
    """The converted model disagrees with the Keras model beyond the tolerance."""
