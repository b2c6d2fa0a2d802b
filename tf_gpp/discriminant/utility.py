"""Per-neuron discriminant utility of the feature layer, and how concentrated it is.

* ``fisher`` (CVIU paper): treat Sw and Sb as diagonal,
  ``v_j = diag(Sb)_j / (diag(Sw)_j + r)`` with the same shrinkage ``r`` as
  :func:`~tf_gpp.discriminant.lda` (``eps=0`` gives the raw ratio, which is
  infinite for a neuron that is constant within every class).
* ``lda``: ``u_j = sum_k lambda_k |E_jk|`` over the top ``C-1`` unit-norm directions.

Zero-variance neurons get utility 0. Fewer than two classes raise
:class:`~tf_gpp.errors.DataError` (see :mod:`.lda`).
"""

from __future__ import annotations

import math

import numpy as np

from tf_gpp.discriminant.lda import active_neurons, lda, require_two_classes, shrinkage
from tf_gpp.discriminant.stats import ScatterStats

__all__ = ["neuron_utility", "fisher_ratio", "top_share", "UTILITY_METHODS"]

UTILITY_METHODS = ("fisher", "lda")


def fisher_ratio(stats: ScatterStats, eps: float = 1e-3) -> np.ndarray:
    """Per-neuron Fisher ratio ``sigma_b^2 / sigma_w^2`` (shrunk by ``r``), 0 for dead neurons."""
    require_two_classes(stats)
    active = active_neurons(stats)
    r = shrinkage(stats, eps, active)
    sw, sb = stats.sw_diagonal, stats.sb_diagonal
    out = np.zeros_like(sw)
    with np.errstate(divide="ignore"):
        out[active] = sb[active] / (sw[active] + r)
    return out


def neuron_utility(stats: ScatterStats, method: str = "fisher", eps: float = 1e-3) -> np.ndarray:
    """Utility of each feature-layer neuron (M,), non-negative.

    Args:
        stats: statistics of the feature layer (``lda`` needs ``full=True``).
        method: ``"fisher"`` or ``"lda"``.
        eps: relative shrinkage of the within-class scatter.
    """
    if method == "fisher":
        return fisher_ratio(stats, eps)
    if method == "lda":
        eigvals, e = lda(stats, eps)
        return np.abs(e) @ eigvals
    raise ValueError(f"unknown utility method {method!r}; choose one of {UTILITY_METHODS}")


def top_share(utility: np.ndarray, fraction: float = 0.25) -> float:
    """Share of the total utility held by the top ``ceil(fraction * M)`` neurons.

    Lies in ``[fraction, 1]`` (up to rounding); higher means the discriminant power is
    concentrated on fewer neurons. ``nan`` if the total utility is 0.
    """
    u = np.asarray(utility, np.float64).ravel()
    if u.size == 0:
        raise ValueError("utility is empty")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if (u < 0).any() or np.isnan(u).any():
        raise ValueError("utility must be non-negative and not NaN")
    total = float(u.sum())
    if total == 0.0:
        return float("nan")
    k = max(1, math.ceil(fraction * u.size - 1e-9))
    return float(np.sort(u)[::-1][:k].sum() / total)
