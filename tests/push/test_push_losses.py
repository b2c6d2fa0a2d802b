"""Push terms: values against numpy formulas, finiteness on degenerate batches, config."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.linalg import eigh

from tests.push_reference import push_terms_np
from tf_gpp.push import (
    PushLoss,
    alignment_loss,
    decorrelation_loss,
    push_terms,
    separation_loss,
)


def _batch(seed: int = 0, b: int = 64, m: int = 12, c: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, b)
    f = rng.normal(size=(b, m)).astype("float32")
    f[:, :3] += 2.0 * y[:, None]
    return f, y


def _numpy_stats(f, y, c, eps):
    f = f.astype(np.float64)
    b = len(y)
    mu = f.mean(0)
    means = np.stack([f[y == k].mean(0) if (y == k).any() else mu for k in range(c)])
    counts = np.bincount(y, minlength=c)
    resid = f - means[y]
    var_w = (resid**2).mean(0)
    var_b = (counts[:, None] * (means - mu) ** 2).sum(0) / b
    r = eps * var_w.mean() + eps**2 * (var_w + var_b).mean() + 1e-12
    return resid, means, counts, var_w, var_b, r


def test_diagonal_terms_match_numpy():
    f, y = _batch()
    resid, _, _, var_w, var_b, r = _numpy_stats(f, y, 5, 1e-3)
    v = var_b / (var_w + r)
    assert float(separation_loss(f, y, 5)) == pytest.approx(-np.log1p(v).mean(), rel=1e-4)
    cov = resid.T @ resid / len(y)
    d = np.diag(cov) + 1e-3 * np.diag(cov).mean() + 1e-12
    corr = cov / np.sqrt(np.outer(d, d))
    off = (corr**2).sum() - (np.diag(corr) ** 2).sum()
    assert float(decorrelation_loss(f, y, 5)) == pytest.approx(off / (12 * 11), rel=1e-4)
    k = len(np.unique(y))
    v_sig = np.maximum(v - (k - 1) / (len(y) - k), 0.0)  # above the chance level
    s = np.sqrt(v_sig + 1e-3 * v_sig.mean() + 1e-8)
    ratio = s.sum() / np.sqrt((s**2).sum())
    expected = max(ratio - 2.0, 0.0) / (np.sqrt(12) - 2.0)  # target C - 1 = 4 neurons
    assert float(alignment_loss(f, y, 5)) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    plain = (ratio - 1) / (np.sqrt(12) - 1)
    assert float(alignment_loss(f, y, 5, align_target=1)) == pytest.approx(plain, rel=1e-4)


def test_between_class_decorrelation_matches_numpy():
    f, y = _batch(2, c=5)
    y[:4] = 4  # uneven class counts weigh the class means
    ref = push_terms_np(f, y, 6, decorrelation="both")  # class 5 is missing from the batch
    within = push_terms_np(f, y, 6)["cov"]
    got = push_terms(f, y, 6, decorrelation="both")
    assert float(got["cov"]) == pytest.approx(ref["cov"], rel=1e-4)
    assert float(decorrelation_loss(f, y, 6, form="both")) == pytest.approx(ref["cov"], rel=1e-4)
    assert float(decorrelation_loss(f, y, 6)) == pytest.approx(within, rel=1e-4)
    # features 0-2 all carry 2*y: their class means are perfectly correlated across classes
    assert ref["cov"] - within > 3 * 2 / (12 * 11)
    for key in ("sep", "align"):
        assert float(got[key]) == pytest.approx(ref[key], rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="decorrelation"):
        PushLoss(decorrelation="full")


def test_lda_separation_matches_generalized_eigenvalues():
    f, y = _batch(1, c=4)
    resid, means, counts, _, _, _ = _numpy_stats(f, y, 4, 1e-3)
    b, m = f.shape
    sw = resid.T @ resid / b
    cm = means - f.astype(np.float64).mean(0)
    sb = (cm * counts[:, None]).T @ cm / b
    r = 1e-3 * np.trace(sw) / m + 1e-6 * np.trace(sw + sb) / m + 1e-12
    lam = np.sort(eigh(sb, sw + r * np.eye(m), eigvals_only=True))[::-1][:3]
    got = float(separation_loss(f, y, 4, form="lda"))
    assert got == pytest.approx(-np.log1p(lam).mean(), rel=1e-3)


def _degenerate_batches():
    rng = np.random.default_rng(7)
    f = rng.normal(size=(16, 6)).astype("float32")
    dead = f.copy()
    dead[:, 2] = 0.0
    return {
        "missing_classes": (f, np.array([0, 3] * 8)),
        "single_sample_classes": (f[:5], np.arange(5)),
        "one_sample_of_a_class": (f, np.array([0] * 15 + [4])),
        "one_class": (f, np.full(16, 2)),
        "single_sample": (f[:1], np.array([1])),
        "dead_neuron": (dead, np.arange(16) % 3),
        "all_dead": (np.zeros_like(f), np.arange(16) % 3),
        "one_neuron": (f[:, :1], np.arange(16) % 3),
        "one_hot_labels": (f, np.eye(5)[np.arange(16) % 5]),
    }


@pytest.mark.parametrize("form,decorrelation", [("diagonal", "within"), ("lda", "within"), ("diagonal", "both")])
@pytest.mark.parametrize("case", list(_degenerate_batches()))
def test_terms_and_gradients_are_finite(case, form, decorrelation):
    f, y = _degenerate_batches()[case]
    feats = tf.Variable(f)
    with tf.GradientTape() as tape:
        terms = push_terms(feats, y, 5, form=form, decorrelation=decorrelation)
        total = terms["sep"] + terms["cov"] + terms["align"]
    grad = tape.gradient(total, feats)
    for name, value in terms.items():
        assert np.isfinite(value.numpy()), name
    assert np.isfinite(grad.numpy()).all()
    if case in ("one_class", "single_sample"):
        assert float(terms["sep"]) == 0.0


def test_alignment_ranges_from_concentrated_to_uniform():
    rng = np.random.default_rng(3)
    y = np.arange(200) % 4
    noise = rng.normal(size=(200, 8)).astype("float32")
    concentrated = noise.copy()
    concentrated[:, 0] += 10.0 * y
    uniform = noise + 10.0 * y[:, None].astype("float32")
    assert float(alignment_loss(concentrated, y, 4, align_target=1)) < 0.1
    assert float(alignment_loss(uniform, y, 4, align_target=1)) > 0.95
    # the default target (C - 1 = 3 neurons) leaves a single-neuron code alone
    assert float(alignment_loss(concentrated, y, 4)) == 0.0
    assert float(alignment_loss(uniform, y, 4)) > 0.95


def test_decorrelation_sees_within_class_correlation():
    rng = np.random.default_rng(4)
    y = np.arange(400) % 4
    z = rng.normal(size=(400, 1))
    correlated = np.hstack([z, z + 0.1 * rng.normal(size=(400, 1)), rng.normal(size=(400, 2))])
    independent = rng.normal(size=(400, 4))
    assert float(decorrelation_loss(correlated.astype("float32"), y, 4)) > 0.1
    assert float(decorrelation_loss(independent.astype("float32"), y, 4)) < 0.01


def test_push_loss_is_a_serializable_keras_loss():
    loss = PushLoss(a=0.5, b=0.2, g=2.0, num_classes=5, separation="lda", eps=1e-2, align_target=2,
                    decorrelation="both")
    back = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(back, PushLoss) and back.get_config() == loss.get_config()
    assert back.decorrelation == "both"
    f, y = _batch(c=5)
    t = push_terms(f, y, 5, eps=1e-2, form="lda", align_target=2, decorrelation="both")
    expected = 0.5 * t["sep"] + 0.2 * t["cov"] + 2.0 * t["align"]
    assert float(back(y, f)) == pytest.approx(float(expected), rel=1e-5)
    onehot = PushLoss()  # num_classes from the one-hot width
    assert np.isfinite(float(onehot(np.eye(5)[y].astype("float32"), f)))
    with pytest.raises(ValueError, match="num_classes"):
        PushLoss()(y, f)
    with pytest.raises(ValueError, match="separation"):
        PushLoss(separation="full")


def test_single_sigmoid_targets_count_as_two_classes():
    f, y = _batch(5, c=2)
    targets = y[:, None].astype("float32")  # binary_crossentropy-style (B, 1) targets
    t_float = push_terms(f, targets, 2)
    t_int = push_terms(f, y, 2)
    for key in ("sep", "cov", "align"):
        assert float(t_float[key]) == pytest.approx(float(t_int[key]))
