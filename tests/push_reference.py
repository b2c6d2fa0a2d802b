"""NumPy references of the push terms (float64), written from the formulas in
``tf_gpp/push/losses.py``'s docstring, for tests that check the TF code against them."""

from __future__ import annotations

import numpy as np


def _off_diagonal_corr(cov: np.ndarray, eps: float) -> float:
    d = np.diag(cov) + eps * np.diag(cov).mean() + 1e-12
    corr = cov / np.sqrt(np.outer(d, d))
    m = len(d)
    return float(((corr**2).sum() - (np.diag(corr) ** 2).sum()) / (m * (m - 1)))


def push_terms_np(f: np.ndarray, y: np.ndarray, c: int, eps: float = 1e-3, decorrelation: str = "within",
                  align_target: float | None = None) -> dict[str, float]:
    """``{"sep", "cov", "align"}`` (diagonal separation) of features ``f`` (B, M), labels ``y`` (B,)."""
    f = np.asarray(f, np.float64)
    b, m = f.shape
    present = [k for k in range(c) if (y == k).any()]
    counts = np.bincount(y, minlength=c).astype(np.float64)
    mu = f.mean(0)
    means = np.stack([f[y == k].mean(0) if counts[k] else mu for k in range(c)])
    resid = f - means[y]
    centered = (means - mu) * (counts > 0)[:, None]
    var_w = (resid**2).mean(0)
    var_b = (counts[:, None] * centered**2).sum(0) / b
    r = eps * var_w.mean() + eps**2 * (var_w + var_b).mean() + 1e-12
    v = var_b / (var_w + r)
    sep = -np.log1p(v).mean()
    cov = _off_diagonal_corr(resid.T @ resid / b, eps)
    if decorrelation == "both":
        cov += _off_diagonal_corr((centered * counts[:, None]).T @ centered / b, eps)
    k = len(present)
    v_sig = np.maximum(v - (k - 1) / max(b - k, 1), 0.0)
    s = np.sqrt(v_sig + 1e-3 * v_sig.mean() + 1e-8)
    ratio = s.sum() / np.sqrt((s**2).sum())
    floor = np.sqrt(np.clip(c - 1 if align_target is None else align_target, 1, m))
    align = max(ratio - floor, 0.0) / (np.sqrt(m) - floor) if np.sqrt(m) > floor else 0.0
    return {"sep": float(sep), "cov": float(cov), "align": float(align)}
