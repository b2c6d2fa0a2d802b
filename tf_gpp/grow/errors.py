"""The error the grow package raises for invalid growth requests."""

from __future__ import annotations

from tf_gpp.errors import TfGppError


class GrowError(TfGppError, ValueError):
    """An Inception spec or a growth request cannot work: impossible budget, input
    too small for the reductions, bad widths, fewer than two classes. The message
    names the argument and the fix."""
