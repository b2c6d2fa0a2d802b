"""Regularised linear discriminant analysis on :class:`ScatterStats`.

Solves the symmetric generalized eigenproblem ``Sb e = lambda (Sw + r I) e``
with shrinkage ``r = eps * tr(Sw) / M`` (over the neurons kept in the solve),
which also handles a rank-deficient ``Sw`` (fewer samples than neurons,
collinear neurons). Neurons with zero total variance (dead ReLUs, constants)
are dropped from the solve and get loadings 0.

Decisions where the method is silent:

* fewer than two classes with samples -> :class:`~tf_gpp.errors.DataError`
  (there is no discriminant direction; a silent all-zero utility would let a
  pruner delete everything);
* if ``tr(Sw) == 0`` over the kept neurons (every class collapsed to a point)
  the shrinkage falls back to ``eps * tr(St) / M``;
* eigenvectors are unit-norm columns, signed so the largest-magnitude loading
  is positive (deterministic output); eigenvalues are clipped at 0.
"""

from __future__ import annotations

import warnings

import numpy as np

from tf_gpp.discriminant.stats import ScatterStats
from tf_gpp.errors import DataError

__all__ = ["lda", "active_neurons", "shrinkage", "require_two_classes"]


def require_two_classes(stats: ScatterStats) -> None:
    """Raise :class:`DataError` unless at least two classes have samples."""
    present = stats.classes_present
    if stats.num_samples == 0 or present.size < 2:
        raise DataError(
            "discriminant analysis needs samples of at least 2 classes; got samples of "
            f"class(es) {present.tolist()} only. Feed data that covers the task's classes."
        )


def active_neurons(stats: ScatterStats, rtol: float = 1e-12) -> np.ndarray:
    """Boolean mask (M,) of neurons whose total variance is non-zero (relative to the largest)."""
    var_t = stats.sw_diagonal + stats.sb_diagonal
    top = float(var_t.max(initial=0.0))
    return var_t > top * rtol if top > 0 else np.zeros_like(var_t, dtype=bool)


def shrinkage(stats: ScatterStats, eps: float, active: np.ndarray | None = None) -> float:
    """``r = eps * tr(Sw) / M`` over the active neurons (fallback ``eps * tr(St) / M``)."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    active = active_neurons(stats) if active is None else active
    if not active.any():
        return 0.0
    sw = stats.sw_diagonal[active]
    r = eps * float(sw.mean())
    if r == 0.0:
        r = eps * float((sw + stats.sb_diagonal[active]).mean())
    return r


def _generalized_eigh(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs (ascending) of ``a x = w b x`` for symmetric a, SPD b."""
    try:
        from scipy.linalg import eigh
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn, but is optional
        eigh = None
    try:
        if eigh is not None:
            return eigh(a, b)
        chol = np.linalg.cholesky(b)
        inv = np.linalg.solve(chol, np.eye(b.shape[0]))
        c = inv @ a @ inv.T
        w, v = np.linalg.eigh(0.5 * (c + c.T))
        return w, inv.T @ v
    except np.linalg.LinAlgError as exc:
        raise DataError(
            "Sw + r I is not positive definite (singular within-class scatter); use eps > 0."
        ) from exc


def lda(
    stats: ScatterStats, eps: float = 1e-3, n_components: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top discriminant directions of the feature layer.

    Args:
        stats: full (``full=True``) statistics with at least two classes.
        eps: relative shrinkage of ``Sw`` (see the module docstring).
        n_components: number of directions; default and maximum ``C_present - 1``.

    Returns:
        ``(eigvals (K,), E (M, K))``: eigenvalues in descending order and unit-norm
        eigenvectors; rows of zero-variance neurons are 0.
    """
    require_two_classes(stats)
    if not stats.full:
        raise DataError("LDA needs the full within-class scatter; accumulate with full=True.")
    m = stats.num_features
    assert m is not None
    k = stats.classes_present.size - 1
    if n_components is not None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        k = min(k, int(n_components))
    active = active_neurons(stats)
    n_active = int(active.sum())
    if n_active == 0:
        warnings.warn(
            "every neuron of the feature layer has zero variance; LDA directions are all 0.",
            stacklevel=2,
        )
        return np.zeros(k), np.zeros((m, k))
    k = min(k, n_active)
    idx = np.ix_(active, active)
    sw = stats.Sw[idx]
    sb = stats.Sb[idx]
    r = shrinkage(stats, eps, active)
    w, v = _generalized_eigh(0.5 * (sb + sb.T), 0.5 * (sw + sw.T) + r * np.eye(n_active))
    order = np.argsort(w)[::-1][:k]
    eigvals = np.clip(w[order], 0.0, None)
    vecs = v[:, order]
    vecs = vecs / np.linalg.norm(vecs, axis=0, keepdims=True)
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    e = np.zeros((m, k))
    e[active] = vecs
    return eigvals, e
