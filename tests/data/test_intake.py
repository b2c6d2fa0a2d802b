"""The data intake: every form ``model.fit`` accepts gives the batches of the equivalent
``(x, y)`` arrays; labels are read as sparse / one-hot / binary or refused with the fix."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp
from tf_gpp.data import TaskInfo, as_training_data
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance import GPPUtility, Taylor, get_importance

N, F, C = 40, 6, 3


def _xy(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    return (rng.normal(size=(n, F)) + y[:, None]).astype("float32"), y


def _mlp(units: int = C, activation: str | None = None, input_name: str = "pixels") -> keras.Model:
    inp = keras.Input((F,), name=input_name)
    h = keras.layers.Dense(8, activation="relu", name="h1")(inp)
    return keras.Model(inp, keras.layers.Dense(units, activation=activation, name="out")(h))


def _two_inputs(dict_inputs: bool = False, outputs: int = 1) -> keras.Model:
    a, b = keras.Input((F,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu", name="da")(a),
                                    keras.layers.Dense(8, activation="relu", name="db")(b)])
    h = keras.layers.Dense(8, activation="relu", name="h")(h)
    out = keras.layers.Dense(C, name="cls")(h)
    if outputs == 2:
        out = [out, keras.layers.Dense(2, name="reg")(h)]
    return keras.Model({"a": a, "b": b} if dict_inputs else [a, b], out)


def _collect(ds: tf.data.Dataset) -> list[np.ndarray]:
    """Every component of every batch concatenated over the batches (x leaves, y, [w])."""
    parts: list[list[np.ndarray]] = []
    for batch in ds:
        leaves = [np.asarray(t) for t in tf.nest.flatten(batch)]
        parts = parts or [[] for _ in leaves]
        for p, leaf in zip(parts, leaves, strict=True):
            p.append(leaf)
    return [np.concatenate(p) for p in parts]


def _same(got: list[np.ndarray], *expected: np.ndarray) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


# -- every form gives the same batches --------------------------------------------------------------


FORMS = {
    "tuple": lambda x, y: (((x, y),), {}),
    "x_y_arguments": lambda x, y: ((x, y), {}),
    "tf_data_batched": lambda x, y: ((tf.data.Dataset.from_tensor_slices((x, y)).batch(7),), {}),
    "tf_data_unbatched": lambda x, y: ((tf.data.Dataset.from_tensor_slices((x, y)),), {}),
    "tfds_dict": lambda x, y: ((tf.data.Dataset.from_tensor_slices({"image": x, "label": y}).batch(8),), {}),
    "tfds_dict_unbatched": lambda x, y: ((tf.data.Dataset.from_tensor_slices({"image": x, "label": y}),), {}),
    "input_dict_dataset": lambda x, y: ((tf.data.Dataset.from_tensor_slices(({"pixels": x}, y)).batch(5),), {}),
    "input_dict_arrays": lambda x, y: (({"pixels": x}, y), {}),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_yields_the_batches_of_the_arrays(form):
    x, y = _xy()
    args, kwargs = FORMS[form](x, y)
    train, val, task = as_training_data(_mlp(), *args, shuffle=False, **kwargs)
    _same(_collect(train), x, y)
    assert val is None
    assert task == TaskInfo("sparse", C, probabilities=False)


def test_sample_weights_as_a_triple_or_argument():
    x, y = _xy()
    w = np.linspace(0.5, 1.5, N).astype("float32")
    for args, kwargs in ((((x, y, w),), {}), ((x, y), {"sample_weight": w}),
                         ((tf.data.Dataset.from_tensor_slices((x, y, w)).batch(6),), {})):
        train, _, _ = as_training_data(_mlp(), *args, shuffle=False, **kwargs)
        _same(_collect(train), x, y, w)


def test_validation_split_takes_the_last_fraction_as_keras_does():
    x, y = _xy()
    cut = int(np.floor(N * (1 - 0.25)))  # keras.Model.fit's split point
    train, val, _ = as_training_data(_mlp(), x, y, validation_split=0.25, shuffle=False)
    _same(_collect(train), x[:cut], y[:cut])
    _same(_collect(val), x[cut:], y[cut:])
    # validation_data wins over validation_split, as in fit
    _, val, _ = as_training_data(_mlp(), x, y, validation_data=(x[:5], y[:5]), validation_split=0.25)
    _same(_collect(val), x[:5], y[:5])


def test_shuffled_training_data_keeps_every_sample_once():
    x, y = _xy()
    train, _, _ = as_training_data(_mlp(), x, y, batch_size=8, shuffle=True, seed=3)
    xs, ys = _collect(train)
    order = np.lexsort(xs.T[::-1])
    ref = np.lexsort(x.T[::-1])
    np.testing.assert_array_equal(xs[order], x[ref])
    np.testing.assert_array_equal(ys[order], y[ref])


@pytest.mark.parametrize("dict_inputs", [False, True])
def test_multi_input_forms(dict_inputs):
    x, y = _xy()
    xb = np.random.default_rng(1).normal(size=(N, 4)).astype("float32")
    model = _two_inputs(dict_inputs)
    forms = [([x, xb], y), ({"a": x, "b": xb}, y),
             tf.data.Dataset.from_tensor_slices(({"a": x, "b": xb}, y)).batch(9),
             tf.data.Dataset.from_tensor_slices({"a": x, "b": xb, "label": y})]
    for data in forms:
        train, _, task = as_training_data(model, data, shuffle=False)
        batch = next(iter(train))
        assert model(batch[0]).shape[-1] == C  # the model accepts the batches as they come
        got = _collect(train)
        xs = {k: got[i] for i, k in enumerate(sorted({"a", "b"}))} if isinstance(batch[0], dict) else dict(
            zip(("a", "b"), got[:2], strict=True))
        np.testing.assert_array_equal(xs["a"], x)
        np.testing.assert_array_equal(xs["b"], xb)
        np.testing.assert_array_equal(got[-1], y)
        assert task.kind == "sparse" and task.num_classes == C


# -- labels and losses ------------------------------------------------------------------------------


def test_one_hot_labels_are_recognised():
    x, y = _xy()
    _, _, task = as_training_data(_mlp(activation="softmax"), x, np.eye(C, dtype="float32")[y])
    assert task == TaskInfo("one_hot", C, probabilities=True)
    np.testing.assert_array_equal(task.class_indices(np.eye(C)[y]), y)


@pytest.mark.parametrize("activation, shape", [("sigmoid", (N,)), ("sigmoid", (N, 1)), (None, (N,))])
def test_binary_classifier_with_one_output_unit(activation, shape):
    x, y = _xy()
    yb = (y % 2).astype("float32").reshape(shape)
    model = _mlp(1, activation)
    train, _, task = as_training_data(model, x, yb, shuffle=False)
    assert task.kind == "binary" and task.num_classes == 2 and task.probabilities == (activation == "sigmoid")
    np.testing.assert_array_equal(task.class_indices(yb), y % 2)
    # the loss is binary cross-entropy on the output as it is (reference: by hand)
    out = np.asarray(model(x), np.float64)[:, 0]
    p = out if activation == "sigmoid" else 1 / (1 + np.exp(-out))
    ref = -np.mean((y % 2) * np.log(p) + (1 - y % 2) * np.log(1 - p))
    np.testing.assert_allclose(float(task.loss()(yb, model(x))), ref, rtol=1e-4)
    # accuracy: threshold 0.5 on probabilities, 0 on logits
    task.compile(model, keras.optimizers.Adam(1e-3))
    acc = model.evaluate(train, verbose=0, return_dict=True)[task.accuracy_key]
    np.testing.assert_allclose(acc, np.mean((p > 0.5) == (y % 2)), atol=1e-6)


def test_sparse_loss_matches_cross_entropy_by_hand():
    x, y = _xy()
    for activation in ("softmax", None):
        model = _mlp(activation=activation)
        _, _, task = as_training_data(model, x, y)
        z = np.asarray(model(x), np.float64)
        p = z if activation else np.exp(z) / np.exp(z).sum(1, keepdims=True)
        ref = -np.mean(np.log(p[np.arange(N), y]))
        np.testing.assert_allclose(float(task.loss()(y, model(x))), ref, rtol=1e-4)


def test_regression_target_is_refused_with_the_fix():
    """A 3-output regression model with continuous (n, 3) targets is never trained with a cross-entropy."""
    x, _ = _xy()
    targets = np.random.default_rng(2).normal(size=(N, 3)).astype("float32")
    with pytest.raises(tf_gpp.DataError, match="regression.*prunes classifiers.*class indices"):
        as_training_data(_mlp(3), x, targets)


def test_multi_hot_target_is_refused_with_the_fix():
    x, y = _xy()
    multi = np.eye(C, dtype="float32")[y]
    multi[::4, (y[::4] + 1) % C] = 1.0
    with pytest.raises(tf_gpp.DataError, match="multi-hot.*multi-label.*one class per example"):
        as_training_data(_mlp(), x, multi)
    with pytest.raises(tf_gpp.UnsupportedModelError, match="sigmoid over 3 units.*multi-label.*softmax"):
        as_training_data(_mlp(activation="sigmoid"), x, multi)


def test_soft_labels_are_refused_with_the_fix():
    x, y = _xy()
    soft = np.full((N, C), 0.1, "float32")
    soft[np.arange(N), y] = 0.8
    with pytest.raises(tf_gpp.DataError, match="soft.*argmax.*label smoothing"):
        as_training_data(_mlp(), x, soft)


def test_binary_output_refuses_other_labels():
    x, y = _xy()
    with pytest.raises(tf_gpp.DataError, match="classes other than 0/1.*Remap the labels"):
        as_training_data(_mlp(1, "sigmoid"), x, y)
    with pytest.raises(tf_gpp.DataError, match=r"continuous.*0/1"):
        as_training_data(_mlp(1, "sigmoid"), x, np.linspace(0, 1, N))
    with pytest.raises(tf_gpp.UnsupportedModelError, match="softmax over 1 unit.*sigmoid"):
        as_training_data(_mlp(1, "softmax"), x, y % 2)


def test_multi_output_model_names_its_classifier():
    x, y = _xy()
    xb = np.zeros((N, 4), "float32")
    reg = np.random.default_rng(3).normal(size=(N, 2)).astype("float32")
    model = _two_inputs(outputs=2)
    with pytest.raises(tf_gpp.DataError, match=r"2 outputs.*output='cls'.*single-output model"):
        as_training_data(model, [x, xb], {"cls": y, "reg": reg})
    for labels in ({"cls": y, "reg": reg}, [y, reg]):
        _, _, task = as_training_data(model, [x, xb], labels, output="cls")
        assert (task.kind, task.output, task.output_index, task.num_outputs) == ("sparse", "cls", 0, 2)
        np.testing.assert_array_equal(task.class_indices(labels), y)
    with pytest.raises(tf_gpp.DataError, match="no compiled loss for output 'reg'.*single-output"):
        task.training_losses(model)
    model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    losses = task.training_losses(model)
    assert losses["reg"] == "mse" and isinstance(losses["cls"], keras.losses.SparseCategoricalCrossentropy)


# -- refusals name the fix --------------------------------------------------------------------------


def _refusals():
    x, y = _xy()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    bad_x = x.copy()
    bad_x[3, 1] = np.nan
    return [
        ("endless", (ds.repeat(),), {}, r"repeats forever.*take\(n\)"),
        ("split_on_dataset", (ds,), {"validation_split": 0.2}, "validation_split works with array data only.*validation_data="),
        ("dataset_and_y", (ds, y), {}, r"y and sample_weight must be inside it"),
        ("no_labels", (x,), {}, r"without labels.*\(x, y\)"),
        ("unknown_dict_keys", (tf.data.Dataset.from_tensor_slices({"img": x, "cls": y}),), {}, r"keys \['img', 'cls'\].*ds.map"),
        ("lengths", (x, y[:-1]), {}, "equal length"),
        ("weights_length", (x, y), {"sample_weight": np.ones(3)}, "one per sample"),
        ("shape", (x[:, :4], y), {}, r"shape \(None, 4\).*'pixels'.*expects \(None, 6\)"),
        ("nan_inputs", (bad_x, y), {}, "NaN or inf inputs; clean or impute"),
        ("single_class", (x, np.zeros(N, "int64")), {}, "single class.*at least 2 classes"),
        ("empty", (x[:0], y[:0]), {}, "non-empty"),
        ("empty_dataset", (ds.take(0),), {}, "train_data is empty"),
        ("out_of_range", (x, y + 1), {}, r"lie in \[0, 3\).*remap"),
        ("one_hot_width", (x, np.eye(4)[y]), {}, r"shape \(40, 4\).*3 outputs.*width 3"),
        ("no_validation", (x, y), {"require_validation": True}, "validation_split=0.1"),
        ("bad_split", (x, y), {"validation_split": 1.0}, r"validation_split must be in \[0, 1\)"),
        ("unknown_output", (x, y), {"output": "nope"}, "not an output.*'out'"),
    ]


@pytest.mark.parametrize("case", _refusals(), ids=lambda c: c[0])
def test_refusals_name_the_fix(case):
    _, args, kwargs, match = case
    with pytest.raises(tf_gpp.DataError, match=match):
        as_training_data(_mlp(), *args, **kwargs)


def test_validation_labels_in_another_form_are_refused():
    x, y = _xy()
    with pytest.raises(tf_gpp.DataError, match="sparse labels but validation_data has one_hot"):
        as_training_data(_mlp(), x, y, validation_data=(x, np.eye(C)[y]))


# -- the importances take the same forms ------------------------------------------------------------


@pytest.mark.parametrize("dict_inputs", [False, True])
@pytest.mark.parametrize("name", ["gpp_lda", "gpp_linear", "taylor"])
def test_importances_on_a_two_input_model(name, dict_inputs):
    x, y = _xy()
    xb = np.random.default_rng(1).normal(size=(N, 4)).astype("float32")
    model = _two_inputs(dict_inputs)
    dep = DependencyGraph(model)
    scores = []
    for data in (([x, xb], y), ({"a": x, "b": xb}, y),
                 tf.data.Dataset.from_tensor_slices({"a": x, "b": xb, "label": y}).batch(N)):
        imp = get_importance(name)
        imp.prepare(model, dep, data)
        scores.append(np.concatenate([imp(dep, g) for g in dep.groups]))
    for s in scores:
        assert np.all(np.isfinite(s)) and np.all(s >= 0) and s.sum() > 0
        np.testing.assert_allclose(s, scores[0], rtol=1e-5, atol=1e-12)


def test_gpp_statistics_of_a_binary_classifier_use_two_classes():
    x, y = _xy()
    model = _mlp(1, "sigmoid")
    imp = GPPUtility(utility="fisher", trace="linear", eps=0.0)
    imp.prepare(model, DependencyGraph(model), (x, (y % 2)[:, None].astype("float32")))
    h = np.maximum(x @ model.get_layer("h1").kernel.numpy() + model.get_layer("h1").bias.numpy(), 0)
    yb = y % 2
    mu = h.mean(0)
    sb = sum((yb == c).sum() * (h[yb == c].mean(0) - mu) ** 2 for c in (0, 1))
    sw = sum(((h[yb == c] - h[yb == c].mean(0)) ** 2).sum(0) for c in (0, 1))
    keep = sw > 0
    ref = np.zeros_like(mu)
    ref[keep] = sb[keep] / sw[keep]  # the diagonal Fisher ratio of the two classes
    got = imp.final_utility
    np.testing.assert_allclose(got[keep] / got.sum(), ref[keep] / ref.sum(), rtol=1e-3)


def test_taylor_on_a_multi_output_model_uses_the_named_classifier():
    x, y = _xy()
    xb = np.zeros((N, 4), "float32")
    reg = np.random.default_rng(3).normal(size=(N, 2)).astype("float32")
    model = _two_inputs(outputs=2)
    dep = DependencyGraph(model)
    imp = Taylor(output="cls")
    imp.prepare(model, dep, ([x, xb], {"cls": y, "reg": reg}))
    s = np.concatenate([imp(dep, g) for g in dep.groups])
    assert np.all(np.isfinite(s)) and s.sum() > 0
    with pytest.raises(tf_gpp.DataError, match="output='cls'"):
        Taylor().prepare(model, dep, ([x, xb], {"cls": y, "reg": reg}))


def test_split_fit_arguments_reads_f_model_x_y_as_fit_does():
    from tf_gpp.data.intake import split_fit_arguments

    x, y = _xy()
    xb = np.zeros((N, 4), "float32")
    assert split_fit_arguments(x, y)[2] is None and split_fit_arguments(x, y)[1] is y
    got = split_fit_arguments([x, xb], y)
    assert got[0][1] is xb and got[1] is y and got[2] is None
    pairs = ((x, y), (x[:5], y[:5]))
    assert split_fit_arguments(*pairs) == (pairs[0], None, pairs[1])
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    assert split_fit_arguments(ds, ds) == (ds, None, ds)
    train, val, _ = as_training_data(_mlp(), *split_fit_arguments(x, y)[:2], validation_split=0.5, shuffle=False)
    _same(_collect(val), x[N // 2:], y[N // 2:])
