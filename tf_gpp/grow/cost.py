"""Parameters and MACs of a candidate network, via :func:`tf_gpp.profile`, as the one
:class:`~tf_gpp.profile.Cost`."""

from __future__ import annotations

from typing import Any

import keras

from tf_gpp.profile import Cost, profile

__all__ = ["Cost", "budget_violation", "model_cost"]


def model_cost(model: keras.Model, input_shape: Any = None) -> Cost:
    """Parameters (all weights) and multiply-accumulates per sample (at ``input_shape`` for a
    model with unknown input dimensions, as :func:`tf_gpp.profile`)."""
    result = profile(model, input_shape=input_shape)
    return Cost(params=int(result.params), macs=int(result.macs))


def budget_violation(cost: Cost, max_params: int | None, max_macs: int | None) -> str | None:
    """``None`` if ``cost`` fits the budget, else a sentence saying which limit it exceeds."""
    if max_params is not None and cost.params > max_params:
        return f"params {cost.params:,} > max_params {max_params:,}"
    if max_macs is not None and cost.macs > max_macs:
        return f"MACs {cost.macs:,} > max_macs {max_macs:,}"
    return None
