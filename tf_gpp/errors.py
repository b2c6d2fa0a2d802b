"""Exceptions raised by tf_gpp. Every one names the problem and the fix."""

from __future__ import annotations


class TfGppError(Exception):
    """Base class of every error tf_gpp raises on purpose."""


class UnsupportedModelError(TfGppError, ValueError):
    """The model (or one of its layers) cannot be analysed or rewritten.

    The message names the layer and says why; a model tf_gpp cannot handle is
    refused, never silently rebuilt wrong.
    """


class PruningRequestError(TfGppError, ValueError):
    """A pruning request is invalid: unknown layer, index out of range,
    channels that reach a model output, or a group emptied completely."""


class DataError(TfGppError, ValueError):
    """Input data or labels cannot be used (empty, wrong shape, bad labels, NaN)."""


class ArgumentError(TfGppError, ValueError):
    """An argument is out of its valid range (a negative weight or ratio) or not one of the
    accepted choices; the message names the argument and the valid values."""
