"""ScatterStats: exact formulas, Chan merging, label/feature validation, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_gpp.discriminant import ScatterStats, batch_moments
from tf_gpp.errors import DataError


def _data(seed: int, n: int = 120, m: int = 5, c: int = 4, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = rng.normal(size=(n, m)) + offset
    x[:, 0] += 2.0 * y
    return x, y


def _direct(x: np.ndarray, y: np.ndarray, c: int):
    mu = x.mean(0)
    sw = np.zeros((x.shape[1],) * 2)
    means = np.zeros((c, x.shape[1]))
    for k in range(c):
        xc = x[y == k]
        if len(xc):
            means[k] = xc.mean(0)
            sw += (xc - means[k]).T @ (xc - means[k])
    st_ = (x - mu).T @ (x - mu)
    return means, sw, st_


def test_matches_direct_formulas():
    x, y = _data(0)
    s = ScatterStats.from_arrays(x, y, 4)
    means, sw, st_ = _direct(x, y, 4)
    np.testing.assert_allclose(s.means, means, atol=1e-12)
    np.testing.assert_allclose(s.Sw, sw, atol=1e-10)
    np.testing.assert_allclose(s.St, st_, atol=1e-10)
    np.testing.assert_allclose(s.Sb, st_ - sw, atol=1e-10)
    np.testing.assert_array_equal(s.counts, np.bincount(y, minlength=4))
    np.testing.assert_allclose(s.variances_within, np.diag(sw) / len(y))
    np.testing.assert_allclose(s.variances_between, np.diag(st_ - sw) / len(y), atol=1e-12)
    np.testing.assert_allclose(s.mean, x.mean(0), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 50),
    parts=st.integers(1, 6),
    c=st.integers(1, 4),
    full=st.booleans(),
)
def test_merge_of_random_partitions_equals_whole(seed, n, parts, c, full):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * rng.uniform(0.1, 10) + rng.normal() * 100
    y = rng.integers(0, c, n)
    whole = ScatterStats.from_arrays(x, y, c, full=full)
    cuts = np.sort(rng.integers(0, n + 1, parts - 1))
    pieces = [
        ScatterStats(c, full=full).update(xa, ya)
        for xa, ya in zip(np.split(x, cuts), np.split(y, cuts), strict=True)
    ]
    rng.shuffle(pieces)
    merged = sum(pieces)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.means, whole.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged.sw_diagonal, whole.sw_diagonal, rtol=1e-8, atol=1e-7)
    np.testing.assert_allclose(merged.sb_diagonal, whole.sb_diagonal, rtol=1e-8, atol=1e-7)
    if full:
        np.testing.assert_allclose(merged.Sw, whole.Sw, rtol=1e-8, atol=1e-7)
    # the streaming (in-place) path agrees with the merge path
    streamed = ScatterStats(c, full=full)
    for xa, ya in zip(np.split(x, cuts), np.split(y, cuts), strict=True):
        streamed.update(xa, ya)
    np.testing.assert_allclose(streamed.sw_diagonal, whole.sw_diagonal, rtol=1e-8, atol=1e-7)


def test_label_forms_are_equivalent():
    x, y = _data(1)
    ref = ScatterStats.from_arrays(x, y, 4)
    for labels in (np.eye(4)[y], y.astype(np.float32), y[:, None]):
        s = ScatterStats.from_arrays(x, labels, 4)
        np.testing.assert_allclose(s.Sw, ref.Sw)
    assert ScatterStats.from_arrays(x, np.eye(4)[y]).num_classes == 4
    assert ScatterStats.from_arrays(x, y).num_classes == int(y.max()) + 1


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.ones((3, 2)), np.array([0.0, 0.5, 1.0]), "non-integral"),
        (np.ones((3, 2)), np.array([0, 1, 7]), r"\[0, 3\)"),
        (np.ones((3, 2)), np.array([0, -1, 1]), r"\[0, 3\)"),
        (np.ones((3, 2)), np.array([0, 1]), "same number"),
        (np.array([[0.0, np.nan], [1, 1], [2, 2]]), np.array([0, 1, 2]), "NaN"),
        (np.ones((3, 2, 2)), np.array([0, 1, 2]), "Flatten"),
        (np.ones((3, 2)), np.array(["a", "b", "c"]), "LabelEncoder"),
        (np.ones((3, 2)), np.array([0, np.inf, 1]), "NaN or inf"),
    ],
)
def test_bad_inputs_raise_data_error(x, y, match):
    with pytest.raises(DataError, match=match):
        ScatterStats.from_arrays(x, y, 3)


def test_empty_and_mismatched_inputs():
    with pytest.raises(DataError, match="no samples"):
        ScatterStats.from_arrays(np.zeros((0, 3)), np.zeros(0, int), 2)
    s = ScatterStats(2).update(np.zeros((0, 3)), np.zeros(0, int))
    assert s.num_samples == 0
    with pytest.raises(DataError, match="no samples yet"):
        _ = s.Sw
    s.update(np.ones((2, 3)), [0, 1])
    with pytest.raises(DataError, match="same feature layer"):
        s.update(np.ones((2, 4)), [0, 1])
    with pytest.raises(DataError, match="merge"):
        s.merge(ScatterStats(3).update(np.ones((2, 3)), [0, 1]))
    assert isinstance(DataError("x"), ValueError)


def test_dict_round_trip(tmp_path):
    x, y = _data(2)
    s = ScatterStats.from_arrays(x, y, 4)
    back = ScatterStats.from_dict(s.to_dict())
    np.testing.assert_array_equal(back.Sw, s.Sw)
    np.savez(tmp_path / "s.npz", **s.to_dict())
    with np.load(tmp_path / "s.npz", allow_pickle=True) as f:
        loaded = ScatterStats.from_dict(dict(f))
    np.testing.assert_array_equal(loaded.means, s.means)
    np.testing.assert_array_equal(loaded.counts, s.counts)
    as_lists = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in s.to_dict().items()}
    np.testing.assert_array_equal(ScatterStats.from_dict(as_lists).Sw, s.Sw)
    empty = ScatterStats.from_dict(ScatterStats(3).to_dict())
    assert empty.num_features is None and empty.num_samples == 0


def test_diagonal_only_mode():
    x, y = _data(3)
    full = ScatterStats.from_arrays(x, y, 4)
    diag = ScatterStats.from_arrays(x, y, 4, full=False)
    np.testing.assert_allclose(diag.sw_diagonal, np.diag(full.Sw))
    np.testing.assert_allclose(diag.sb_diagonal, np.diag(full.Sb))
    with pytest.raises(DataError, match="full=False"):
        _ = diag.Sw


@pytest.mark.parametrize("full", [True, False])
def test_tf_batch_moments_match_numpy(full):
    x, y = _data(4, offset=1e4)  # large offset: the shift keeps the subtraction exact
    ref = ScatterStats.from_arrays(x, y, 4, full=full)
    first = ScatterStats.from_moments(
        {k: v.numpy() for k, v in batch_moments(tf.constant(x[:60]), y[:60], 4, full=full).items()}
    )
    shift = first._shift()
    mom = batch_moments(tf.constant(x[60:]), tf.constant(np.eye(4)[y[60:]]), 4, shift, full)
    second = ScatterStats.from_moments({k: v.numpy() for k, v in mom.items()}, shift)
    both = first + second
    np.testing.assert_allclose(both.means, ref.means, rtol=1e-12)
    np.testing.assert_allclose(both.sw_diagonal, ref.sw_diagonal, rtol=1e-6)


def test_tf_batch_moments_flag_bad_rows():
    x = np.array([[0.0, 1.0], [np.inf, 0.0], [1.0, 1.0]])
    mom = {k: v.numpy() for k, v in batch_moments(tf.constant(x), [0, 1, 1], 2).items()}
    with pytest.raises(DataError, match="NaN or inf"):
        ScatterStats.from_moments(mom)
    mom = {k: v.numpy() for k, v in batch_moments(tf.constant(x[:1]), [2.5], 2).items()}
    with pytest.raises(DataError, match="integral"):
        ScatterStats.from_moments(mom)


def test_accumulate_over_model_dataset_and_arrays():
    import keras

    keras.utils.set_random_seed(0)
    x, y = _data(5, n=100, m=6)
    x = x.astype("float32")
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="relu")(inp))
    ref = ScatterStats.from_arrays(np.asarray(model(x)), y, 4)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    for data in (ds, (x, y)):
        s = ScatterStats.accumulate(model, data, 4, batch_size=17, verbose=1)
        np.testing.assert_allclose(s.Sw, ref.Sw, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(s.counts, ref.counts)
    part = ScatterStats.accumulate(None, ds, 4, steps=2)
    assert part.num_samples == 64 and part.num_features == 6
    with pytest.raises(DataError, match="steps"):
        ScatterStats.accumulate(None, ds.repeat(), 4)
    with pytest.raises(DataError, match=r"\(x, y\)"):
        ScatterStats.accumulate(None, tf.data.Dataset.from_tensor_slices(x).batch(8), 4)
