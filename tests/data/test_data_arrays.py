"""from_arrays: label forms, validation errors, splits, preprocessing."""

import numpy as np
import pytest

from tf_gpp.data import Preprocessing, from_arrays, stratified_order, to_sparse_labels
from tf_gpp.errors import DataError


def _x(n=40, shape=(4, 4)):
    return np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_sparse_int_labels_and_channel_axis():
    y = np.arange(40) % 4
    ds = from_arrays(_x(), y, validation_split=0.25, batch_size=8)
    assert ds.input_shape == (4, 4, 1)
    assert ds.num_classes == 4 and ds.class_names == ["0", "1", "2", "3"]
    assert ds.num_examples == {"train": 30, "val": 10}
    x, yy = ds.as_numpy("train")
    assert x.shape == (30, 4, 4, 1) and x.dtype == np.float32
    assert yy.dtype == np.int32
    _, yv = ds.as_numpy("val")
    assert sorted(np.bincount(yv).tolist()) == [2, 2, 3, 3]  # stratified
    assert ds.test is None


@pytest.mark.parametrize(
    "labels",
    [
        np.arange(40) % 3,
        (np.arange(40) % 3).astype(np.float32),
        (np.arange(40) % 3).reshape(-1, 1),
        np.eye(3, dtype=np.float32)[np.arange(40) % 3],
    ],
    ids=["int", "float-integral", "column", "one-hot"],
)
def test_label_forms_equivalent(labels):
    y, c, names = to_sparse_labels(labels)
    np.testing.assert_array_equal(y, np.arange(40) % 3)
    assert c == 3 and names is None and y.dtype == np.int32


def test_string_and_bool_labels():
    y, c, names = to_sparse_labels(np.array(["cat", "dog", "cat", "ant"]))
    assert names == ["ant", "cat", "dog"] and c == 3
    np.testing.assert_array_equal(y, [1, 2, 1, 0])
    ds = from_arrays(_x(8), np.array(["a", "b"] * 4), validation_split=0.0)
    assert ds.class_names == ["a", "b"]
    y, c, _ = to_sparse_labels(np.array([True, False, True]))
    assert c == 2 and y.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.linspace(0, 1, 40), "continuous"),
        (np.full(40, 2), "single class"),
        (np.array([0, 1, -1] * 13 + [0]), "negative"),
        (np.array([0.0, 1.0, np.nan] * 13 + [0]), "NaN"),
        (np.tile([[0.5, 0.5], [0.2, 0.8]], (20, 1)), "soft"),
        (np.tile([[1, 1, 0], [0, 1, 1]], (20, 1)), "not one-hot"),
        (np.zeros((40, 2, 2)), "1-D"),
    ],
)
def test_bad_labels(labels, message):
    with pytest.raises(DataError, match=message):
        from_arrays(_x(), labels)


def test_num_classes_checks():
    with pytest.raises(DataError, match="num_classes=3"):
        to_sparse_labels(np.array([0, 1, 3]), num_classes=3)
    y, c, _ = to_sparse_labels(np.array([0, 1, 1]), num_classes=5)
    assert c == 5
    with pytest.raises(DataError, match="at least 2"):
        to_sparse_labels(np.array([0, 0]), num_classes=1)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((0, 4, 4)), np.zeros(0), "empty"),
        (_x(), np.zeros(0), "empty"),
        (_x(), np.arange(39) % 2, "40 examples but y has 39"),
        (np.zeros(40), np.arange(40) % 2, r"shape \(n, \.\.\.\)"),
        (np.full((40, 2, 2), np.nan), np.arange(40) % 2, "NaN"),
        (np.array([["a"]] * 40), np.arange(40) % 2, "numeric"),
    ],
)
def test_bad_inputs(x, y, message):
    with pytest.raises(DataError, match=message):
        from_arrays(x, y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"validation_split": 1.0}, "validation_split"),
        ({"validation_split": -0.1}, "validation_split"),
        ({"batch_size": 0}, "batch_size"),
        ({"limit": 1}, "limit"),
        ({"class_names": ["a"]}, "class_names"),
        ({"preprocessing": "zscore"}, "preprocessing"),
        ({"x_test": _x(4)}, "together"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(DataError, match=message):
        from_arrays(_x(), np.arange(40) % 2, **kwargs)


def test_limit_test_split_and_separate_test():
    y = np.arange(100) % 5
    ds = from_arrays(_x(100), y, limit=50, validation_split=0.2, test_split=0.2, seed=3)
    assert ds.num_examples == {"train": 32, "val": 8, "test": 10}
    xs = [ds.as_numpy(s)[0] for s in ("train", "val", "test")]
    flat = np.concatenate([a.reshape(len(a), -1) for a in xs])
    assert len(np.unique(flat, axis=0)) == 50  # disjoint splits
    ds2 = from_arrays(_x(100), y, x_test=_x(30), y_test=np.arange(30) % 5, limit=20)
    assert ds2.num_examples["test"] == 20
    _, yt = ds2.as_numpy("test")
    assert np.bincount(yt).tolist() == [4] * 5
    ds3 = from_arrays(_x(10), np.arange(10) % 2, x_test=_x(3), y_test=np.zeros(3))
    assert ds3.num_examples["test"] == 3  # a one-class held-out split is fine


def test_stratified_order_prefixes_are_balanced():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    order = stratified_order(y, seed=1)
    assert sorted(order.tolist()) == list(range(100))
    assert np.bincount(y[order[:10]], minlength=4).tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(order, stratified_order(y, seed=1))


def test_preprocessing_recorded_and_applied():
    x = _x()
    y = np.arange(40) % 2
    ds = from_arrays(x, y, validation_split=0.0, shuffle=False)
    assert ds.preprocessing == Preprocessing.rescale(1 / 255)
    got, _ = ds.as_numpy("train")
    np.testing.assert_allclose(got[..., 0], x / 255.0, rtol=1e-6)
    floats = from_arrays(x.astype(np.float32), y, validation_split=0.0)
    assert floats.preprocessing.is_identity
    std = from_arrays(x, y, validation_split=0.0, standardize=True)
    got, _ = std.as_numpy("train")
    assert abs(got.mean()) < 1e-4 and abs(got.std() - 1) < 1e-3
    assert std.preprocessing.scale == pytest.approx(1 / 255)
