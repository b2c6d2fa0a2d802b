"""LDA against scikit-learn and the defining equation; per-neuron utilities; top_share."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from tf_gpp.discriminant import ScatterStats, lda, neuron_utility, shrinkage, top_share
from tf_gpp.errors import DataError


def _blobs(seed: int, n: int = 300, m: int = 8, c: int = 4, informative: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = rng.normal(size=(n, m))
    centers = rng.normal(scale=3.0, size=(c, informative))
    x[:, :informative] += centers[y]
    return x, y


def test_lda_matches_sklearn_without_shrinkage():
    x, y = _blobs(0)
    vals, e = lda(ScatterStats.from_arrays(x, y, 4), eps=0.0)
    sk = LinearDiscriminantAnalysis(solver="eigen").fit(x, y)
    np.testing.assert_allclose(vals / vals.sum(), sk.explained_variance_ratio_[:3], rtol=1e-6)
    ref = sk.scalings_[:, :3] / np.linalg.norm(sk.scalings_[:, :3], axis=0)
    np.testing.assert_allclose(np.abs((ref * e).sum(0)), 1.0, atol=1e-8)


def test_lda_solves_the_shrunk_generalized_problem():
    x, y = _blobs(1)
    s = ScatterStats.from_arrays(x, y, 4)
    vals, e = lda(s, eps=1e-2)
    r = 1e-2 * np.trace(s.Sw) / s.num_features
    assert shrinkage(s, 1e-2) == pytest.approx(r)
    lhs = s.Sb @ e
    rhs = (s.Sw + r * np.eye(8)) @ e * vals
    np.testing.assert_allclose(lhs, rhs, atol=1e-8 * np.abs(lhs).max())
    np.testing.assert_allclose(np.linalg.norm(e, axis=0), 1.0)
    assert e.shape == (8, 3) and np.all(np.diff(vals) <= 0) and vals.min() >= 0


def test_rank_deficient_and_dead_neurons():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 4)  # 12 samples, 20 neurons: Sw is rank deficient
    x = rng.normal(size=(12, 20)) + y[:, None]
    x[:, 5] = 0.0  # dead ReLU
    x[:, 6] = 3.0  # constant
    s = ScatterStats.from_arrays(x, y, 3)
    vals, e = lda(s)
    assert np.isfinite(vals).all() and np.isfinite(e).all() and vals.shape == (2,)
    np.testing.assert_array_equal(e[[5, 6]], 0.0)
    for method in ("fisher", "lda"):
        u = neuron_utility(s, method)
        assert u[5] == 0.0 and u[6] == 0.0 and np.isfinite(u).all() and (u >= 0).all()
    with pytest.raises(DataError, match="eps > 0"):
        lda(s, eps=0.0)


def test_fewer_than_two_classes_is_an_error():
    x = np.random.default_rng(3).normal(size=(10, 4))
    s = ScatterStats.from_arrays(x, np.full(10, 2), 5)
    for fn in (lambda: lda(s), lambda: neuron_utility(s), lambda: neuron_utility(s, "lda")):
        with pytest.raises(DataError, match="at least 2 classes"):
            fn()
    with pytest.raises(DataError, match="full=True"):
        lda(ScatterStats.from_arrays(x, np.arange(10) % 2, 2, full=False))


def test_missing_classes_reduce_the_number_of_directions():
    x, y = _blobs(4, c=5)
    keep = y != 3
    vals, e = lda(ScatterStats.from_arrays(x[keep], y[keep], 5))
    assert vals.shape == (3,) and e.shape == (8, 3)


@pytest.mark.parametrize("method", ["fisher", "lda"])
def test_utility_finds_the_informative_neurons(method):
    x, y = _blobs(5, n=600, m=20, c=5, informative=3)
    perm = np.random.default_rng(0).permutation(20)
    x = x[:, perm] * np.random.default_rng(1).uniform(0.5, 5.0, 20)  # scale-free
    u = neuron_utility(ScatterStats.from_arrays(x, y, 5), method)
    informative = set(np.argsort(perm)[:3].tolist())
    assert set(np.argsort(u)[::-1][:3].tolist()) == informative


def test_fisher_is_the_variance_ratio():
    x, y = _blobs(6)
    s = ScatterStats.from_arrays(x, y, 4)
    var_w = sum(((x[y == c] - x[y == c].mean(0)) ** 2).sum(0) for c in range(4)) / len(y)
    var_b = sum((y == c).sum() * (x[y == c].mean(0) - x.mean(0)) ** 2 for c in range(4)) / len(y)
    np.testing.assert_allclose(neuron_utility(s, "fisher", eps=0.0), var_b / var_w, rtol=1e-10)
    with pytest.raises(ValueError, match="unknown utility"):
        neuron_utility(s, "magic")


def test_top_share():
    assert top_share(np.array([4.0, 0, 0, 0])) == 1.0
    assert top_share(np.ones(8)) == pytest.approx(0.25)
    assert top_share(np.array([3.0, 1.0, 1.0, 1.0, 0.0]), 0.25) == pytest.approx(
        4 / 6
    )  # ceil(1.25)
    assert np.isnan(top_share(np.zeros(5)))
    with pytest.raises(ValueError):
        top_share(np.array([1.0, -1.0]))
    with pytest.raises(ValueError):
        top_share(np.ones(3), 0.0)
