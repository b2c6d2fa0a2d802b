"""Every row of docs/errors.md, triggered through the public API.

Each test asserts the exception type (a :class:`tf_gpp.TfGppError`) and that the message
names the problem; the rows where the input is accepted assert the result instead.
Row ids (``M1``, ``L3``...) match the table.
"""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp
from tf_gpp.cli import main as cli
from tf_gpp.convert import ConversionError, TFLiteFileError, load_interpreter, to_tflite
from tf_gpp.discriminant import ScatterStats, lda, neuron_utility
from tf_gpp.importance import GPPUtility

#: no training at all: the checks under test run before any fit
QUICK = {"rounds": 1, "push": False, "importance": "l1", "finetune_epochs": 0, "verbose": 0}


def _xy(n: int = 60, classes: int = 3, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, features)).astype("float32") + y[:, None]
    return x, y


def _mlp(classes: int = 3, features: int = 6) -> keras.Model:
    inp = keras.Input((features,))
    h = keras.layers.Dense(8, activation="relu", name="h1")(inp)
    h = keras.layers.Dense(8, activation="relu", name="h2")(h)
    return keras.Model(inp, keras.layers.Dense(classes, name="out")(h), name="mlp")


def _cnn_no_head() -> keras.Model:
    """Conv -> global pooling gives the 3 logits: no Dense layer anywhere."""
    inp = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(3, 1, name="c2")(h)
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="gap")(h))


class _Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(3)

    def call(self, x):
        return self.head(self.hidden(x))


def _subclassed() -> keras.Model:
    net = _Subclassed()
    net(np.zeros((1, 6), "float32"))
    return net


@keras.saving.register_keras_serializable(package="tests_reliability")
class _Scale(keras.layers.Layer):
    """A per-channel custom layer tf_gpp has no handler for."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="s")

    def call(self, x):
        return x * self.s


def _custom_model() -> keras.Model:
    inp = keras.Input((6,))
    h = _Scale(name="scale")(keras.layers.Dense(8, name="h1")(inp))
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h))


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mlp.keras"
    _mlp().save(path)
    return path


# -- models (M) -----------------------------------------------------------------------
def test_M1_subclassed_model_compress():
    x, y = _xy()
    with pytest.raises(tf_gpp.UnsupportedModelError, match="subclassed.*functional API"):
        tf_gpp.compress(_subclassed(), (x, y), (x, y), target_macs=0.5, **QUICK)


def test_M2_subclassed_model_engine_and_push():
    net = _subclassed()
    with pytest.raises(tf_gpp.UnsupportedModelError, match="subclassed"):
        tf_gpp.channel_groups(net)
    with pytest.raises(tf_gpp.UnsupportedModelError, match="functional or Sequential"):
        tf_gpp.PushModel(net)


def test_M3_no_dense_classifier_head():
    with pytest.raises(tf_gpp.UnsupportedModelError, match="no Dense classifier head.*feature_layer="):
        tf_gpp.PushModel(_cnn_no_head())
    x = np.random.default_rng(0).normal(size=(30, 6, 6, 1)).astype("float32")
    y = np.arange(30) % 3
    with pytest.raises(tf_gpp.UnsupportedModelError, match="no Dense classifier head"):
        tf_gpp.compress(_cnn_no_head(), (x, y), (x, y), target_macs=0.5, rounds=1, push=False,
                        importance="gpp_lda", finetune_epochs=0, verbose=0)


def test_M4_nonexistent_feature_layer():
    x, y = _xy()
    with pytest.raises(tf_gpp.UnsupportedModelError, match="'nope' is not a layer"):
        tf_gpp.PushModel(_mlp(), feature_layer="nope")
    with pytest.raises(tf_gpp.UnsupportedModelError, match="'nope' is not a layer"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, rounds=1, push=False, finetune_epochs=0,
                        importance=GPPUtility(feature_layer="nope"), verbose=0)


def test_M5_feature_layer_not_a_vector():
    with pytest.raises(tf_gpp.UnsupportedModelError, match="vector per sample"):
        tf_gpp.PushModel(_cnn_no_head(), feature_layer="c1")


def test_M6_several_outputs():
    inp = keras.Input((6,))
    h = keras.layers.Dense(8)(inp)
    two = keras.Model(inp, [keras.layers.Dense(3)(h), keras.layers.Dense(1)(h)])
    x, y = _xy()
    with pytest.raises(tf_gpp.UnsupportedModelError, match="push=False"):
        tf_gpp.compress(two, (x, y), (x, y), target_macs=0.5, **{**QUICK, "push": True})


def test_M7_nan_weights():
    model = _mlp()
    kernel, bias = model.get_layer("h1").get_weights()
    kernel[0, 0] = np.nan
    model.get_layer("h1").set_weights([kernel, bias])
    x, y = _xy()
    with pytest.raises(tf_gpp.UnsupportedModelError, match="'h1'.*NaN or inf.*diverged"):
        tf_gpp.compress(model, (x, y), (x, y), target_macs=0.5, **QUICK)


def test_M8_activations_overflow_to_inf():
    model = _mlp()
    for name in ("h1", "h2"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([np.full_like(kernel, 1e30), bias])
    dep = tf_gpp.DependencyGraph(model)
    with pytest.raises(tf_gpp.DataError, match="features contain NaN or inf"):
        GPPUtility().prepare(model, dep, _xy())


def test_M9_custom_layer_is_frozen_with_its_reason():
    model = _custom_model()
    assert not any("h1" in g.producers for g in tf_gpp.channel_groups(model))
    with pytest.raises(tf_gpp.PruningRequestError, match="'scale'.*no channel handler"):
        tf_gpp.prune_channels(model, {"h1": [0]})
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match="cannot be met.*Not prunable.*'scale'.*no channel handler"):
        tf_gpp.compress(model, (x, y), (x, y), target_macs=0.5, **QUICK)


def test_M10_invalid_prune_requests():
    model = _mlp()
    with pytest.raises(tf_gpp.PruningRequestError, match="no layer named 'nope'"):
        tf_gpp.prune_channels(model, {"nope": [0]})
    with pytest.raises(tf_gpp.PruningRequestError, match="out of range.*valid 0..7"):
        tf_gpp.prune_channels(model, {"h1": [99]})
    with pytest.raises(tf_gpp.PruningRequestError, match="removes all 8 channels"):
        tf_gpp.prune_channels(model, {"h1": list(range(8))})
    with pytest.raises(tf_gpp.PruningRequestError, match="reach model output"):
        tf_gpp.prune_channels(model, {"out": [0]})


# -- labels (L) -----------------------------------------------------------------------
@pytest.mark.parametrize("form", ["one_hot", "float_integral", "column"])
def test_L1_accepted_label_forms(form):
    x, y = _xy()
    labels = {"one_hot": np.eye(3, dtype="float32")[y], "float_integral": y.astype("float32"),
              "column": y[:, None]}[form]
    res = tf_gpp.compress(_mlp(), (x, labels), (x, labels), target_macs=0.7, rounds=1, push_epochs=1,
                          finetune_epochs=1, verbose=0)
    assert res.history and res.history[-1].macs_ratio <= 0.7
    assert 0.0 <= res.history[-1].accuracy <= 1.0


def test_L2_one_hot_of_the_wrong_width():
    x, y = _xy()
    wide = np.eye(4, dtype="float32")[y]
    with pytest.raises(tf_gpp.DataError, match=r"shape \(60, 4\).*3 outputs.*width 3"):
        tf_gpp.compress(_mlp(), (x, wide), (x, wide), target_macs=0.5, **QUICK)


@pytest.mark.parametrize(
    "bad, shown, shown_by_from_arrays",
    [(7, r"\[0, 7\]", "contains label 7 but num_classes=3"), (-1, r"\[-1, 2\]", "negative labels")],
)
def test_L3_labels_out_of_range(bad, shown, shown_by_from_arrays):
    x, y = _xy()
    y = y.copy()
    y[5] = bad
    with pytest.raises(tf_gpp.DataError, match=rf"lie in \[0, 3\).*{shown}.*remap"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match=shown_by_from_arrays):
        tf_gpp.data.from_arrays(x, y, num_classes=3)
    with pytest.raises(tf_gpp.DataError, match=r"\[0, 3\)"):
        ScatterStats.from_arrays(x, y, num_classes=3)


def test_L4_out_of_range_label_past_the_scanned_batches():
    """compress scans 20 batches of a tf.data pipeline up front; TF's own error later is translated."""
    x, y = _xy(n=48)
    y = y.copy()
    y[-1] = 5  # in batch 24 of 24
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    val = tf.data.Dataset.from_tensor_slices((x[:-1], y[:-1])).batch(16)
    with pytest.raises(tf_gpp.DataError, match=r"label 5 but the model has 3 classes.*\[0, 3\)"):
        tf_gpp.compress(_mlp(), train, val, target_macs=0.7, rounds=1, push=False, importance="l1",
                        finetune_epochs=1, verbose=0)


def test_L5_non_integral_float_labels():
    x, y = _xy()
    soft = y.astype("float32") + 0.5
    with pytest.raises(tf_gpp.DataError, match="integral class indices"):
        tf_gpp.compress(_mlp(), (x, soft), (x, soft), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="continuous values.*regression"):
        tf_gpp.data.from_arrays(x, soft)


def test_L6_nan_labels():
    x, y = _xy()
    y = y.astype("float32")
    y[3] = np.nan
    with pytest.raises(tf_gpp.DataError, match="NaN"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="NaN"):
        tf_gpp.data.from_arrays(x, y)


def test_L7_a_single_class():
    x, _ = _xy()
    y = np.zeros(len(x), "int64")
    with pytest.raises(tf_gpp.DataError, match="single class.*at least 2 classes"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="single class"):
        tf_gpp.data.from_arrays(x, y)
    with pytest.raises(tf_gpp.DataError, match="at least 2 classes"):
        neuron_utility(ScatterStats.from_arrays(x, y, num_classes=3), "lda")


def test_L8_a_batch_with_one_class_trains_with_finite_push_terms():
    x, y = _xy()
    order = np.argsort(y, kind="stable")  # sorted: every batch of 20 holds one class
    pm = tf_gpp.PushModel(_mlp())
    pm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = pm.fit(x[order], y[order], batch_size=20, epochs=1, shuffle=False, verbose=0).history
    for key in ("loss", "push_sep", "push_cov", "push_align"):
        assert np.isfinite(hist[key]).all(), key


def test_L9_a_class_with_one_sample():
    x, _ = _xy()
    y = np.where(np.arange(len(x)) == 0, 2, np.arange(len(x)) % 2)  # class 2: one sample
    for method in ("fisher", "lda"):
        u = neuron_utility(ScatterStats.from_arrays(x, y, num_classes=3), method)
        assert np.isfinite(u).all() and (u >= 0).all() and u.sum() > 0
    res = tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.7, rounds=1, push_epochs=1,
                          finetune_epochs=0, verbose=0)
    assert res.history[-1].macs_ratio <= 0.7


# -- data values (D) ------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_D1_nan_or_inf_inputs(value):
    x, y = _xy()
    x = x.copy()
    x[4, 2] = value
    with pytest.raises(tf_gpp.DataError, match="NaN or inf inputs"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="NaN/inf"):
        tf_gpp.data.from_arrays(x, y)
    images = np.random.default_rng(0).normal(size=(12, 8, 8, 1)).astype("float32")
    images[0, 0, 0, 0] = value
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(12) % 3)).batch(4)
    with pytest.raises(tf_gpp.DataError, match="NaN or inf inputs"):
        tf_gpp.grow_network(ds, ds, (8, 8, 1), 3, max_rounds=0, epochs_per_round=1, verbose=0)


def test_D2_constant_features():
    x, y = np.ones((30, 4)), np.arange(30) % 3
    stats = ScatterStats.from_arrays(x, y, num_classes=3)
    with pytest.warns(UserWarning, match="zero variance"):
        u = neuron_utility(stats, "lda")
    np.testing.assert_array_equal(u, 0.0)
    np.testing.assert_array_equal(neuron_utility(stats, "fisher"), 0.0)
    # through the importance (what compress uses), a dead feature layer is refused
    model = _mlp()
    kernel, _ = model.get_layer("h2").get_weights()
    model.get_layer("h2").set_weights([np.zeros_like(kernel), np.ones(8, "float32")])
    with pytest.warns(UserWarning, match="zero variance"), \
            pytest.raises(tf_gpp.DataError, match="no discriminant information.*train the model"):
        GPPUtility(utility="lda").prepare(model, tf_gpp.DependencyGraph(model), _xy())


def test_D3_duplicate_and_rank_deficient_features():
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    base = rng.normal(size=(30, 2)) + y[:, None]
    dup = np.concatenate([base, base, 2.0 * base[:, :1]], axis=1)  # rank 2 in 5 columns
    u = neuron_utility(ScatterStats.from_arrays(dup, y), "lda")
    assert np.isfinite(u).all() and u.sum() > 0
    np.testing.assert_allclose(u[0], u[2], rtol=1e-6)  # identical columns, identical utility
    wide = rng.normal(size=(6, 20))  # fewer samples than features
    eigvals, e = lda(ScatterStats.from_arrays(wide, np.arange(6) % 3))
    assert np.isfinite(eigvals).all() and np.isfinite(e).all()
    with pytest.raises(tf_gpp.DataError, match="not positive definite.*eps > 0"):
        lda(ScatterStats.from_arrays(dup, y), eps=0.0)


# -- targets and ratios (T) -----------------------------------------------------------
@pytest.mark.parametrize("target", [0, -0.3, float("nan")])
def test_T1_zero_negative_or_nan_target(target):
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match=r"target_macs=.*in \(0, 1\]"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=target, **QUICK)


def test_T2_target_below_what_min_channels_allow():
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match="cannot be met.*smallest model.*min_channels=4"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.2, min_channels=4, **QUICK)
    with pytest.raises(tf_gpp.PruningRequestError, match="cannot be met.*max_pruning_ratio=0.5"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.1, max_pruning_ratio=0.5, **QUICK)


def test_T3_non_integral_target_above_one():
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match="absolute counts.*whole numbers"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=1.5, **QUICK)


@pytest.mark.parametrize("target", [1.0, 10**9])
def test_T4_target_the_base_model_already_meets(target):
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match="already meets it, nothing to prune"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_params=target, **QUICK)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_accuracy_drop": -0.1}, "max_accuracy_drop"),
        ({"max_accuracy_drop": 1.5}, "max_accuracy_drop"),
        ({"rounds": 0}, "rounds=0"),
        ({"min_channels": 0}, "min_channels=0"),
        ({"round_to": 0}, "round_to=0"),
        ({"importance": "magic"}, "unknown importance 'magic'"),
        ({"strategy": "magic"}, "strategy='magic'"),
        ({"lr_schedule": "step"}, "lr_schedule='step'"),
        ({"min_finetune_steps": -1}, "min_finetune_steps=-1"),
        ({"max_pruning_ratio": 0}, r"max_pruning_ratio=0: the largest share .* in \(0, 1\]"),
        ({"max_pruning_ratio": 1.2}, "max_pruning_ratio=1.2"),
    ],
)
def test_T5_out_of_range_compress_arguments(kwargs, match):
    x, y = _xy()
    args = {**QUICK, "target_macs": 0.5, **kwargs}
    with pytest.raises(tf_gpp.PruningRequestError, match=match):
        tf_gpp.compress(_mlp(), (x, y), (x, y), **args)


def test_T9_a_returned_model_far_below_the_base_is_reported():
    x, y = _xy()
    model = _mlp()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=30, verbose=0)
    with pytest.warns(UserWarning, match=r"points below the base accuracy.*max_accuracy_drop=0.02"):
        res = tf_gpp.compress(model, (x, y), (x, y), target_macs=0.3, rounds=1, finetune_epochs=0,
                              importance="random", verbose=0)
    assert res.history[-1].macs_ratio <= 0.3  # the target is reached, and the gap is said
    assert "points below the base accuracy" in res.summary()


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5])
def test_T6_validation_split_out_of_range(split):
    x, y = _xy()
    with pytest.raises(tf_gpp.DataError, match=r"validation_split must be in \[0, 1\)"):
        tf_gpp.data.from_arrays(x, y, validation_split=split)


@pytest.mark.parametrize("weights", [{"a": -0.1}, {"g": float("nan")}])
def test_T7_negative_or_nan_push_weights(weights):
    with pytest.raises(tf_gpp.ArgumentError, match="push weight .* finite and >= 0"):
        tf_gpp.PushLoss(**weights)


def test_T10_push_options_that_cannot_work_together():
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match="push_every_round=True pushes only with push=True"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, push_every_round=True, **QUICK)
    with pytest.raises(tf_gpp.PruningRequestError, match="strategy='per_layer' needs target_macs"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), strategy="per_layer", **QUICK)
    with pytest.raises(tf_gpp.ArgumentError, match="decorrelation must be one of"):
        tf_gpp.PushLoss(decorrelation="all")
    with pytest.raises(tf_gpp.ArgumentError, match="separation must be one of"):
        tf_gpp.PushLoss(separation="full")
    with pytest.raises(tf_gpp.ArgumentError, match="warmup_steps=10 ramps per step"):
        tf_gpp.PushSchedule(warmup_steps=10, warmup_epochs=2)


# -- empty and endless data (E) -------------------------------------------------------
def test_E1_empty_arrays():
    x, y = _xy()
    with pytest.raises(tf_gpp.DataError, match="non-empty"):
        tf_gpp.compress(_mlp(), (x[:0], y[:0]), (x, y), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="empty"):
        tf_gpp.data.from_arrays(x[:0], y[:0])


@pytest.mark.parametrize("which", ["train", "validation"])
def test_E2_empty_tf_data_pipeline(which):
    x, y = _xy()
    empty = tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(8)
    train, val = (empty, (x, y)) if which == "train" else ((x, y), empty)
    with pytest.raises(tf_gpp.DataError, match=f"{which}_data is empty"):
        tf_gpp.compress(_mlp(), train, val, target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="no samples"):
        ScatterStats.accumulate(None, empty, 3)
    images = tf.data.Dataset.from_tensor_slices((np.zeros((0, 8, 8, 1), "float32"), y[:0])).batch(8)
    with pytest.raises(tf_gpp.DataError, match="empty"):
        tf_gpp.grow_network(images, images, (8, 8, 1), 3, max_rounds=0, verbose=0)


def test_E3_endless_dataset_is_refused_not_a_hang():
    x, y = _xy()
    endless = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    with pytest.raises(tf_gpp.DataError, match="repeats forever.*take"):
        tf_gpp.compress(_mlp(), endless, (x, y), target_macs=0.5, **QUICK)
    with pytest.raises(tf_gpp.DataError, match="repeats forever.*steps="):
        ScatterStats.accumulate(None, endless, 3)


def test_E4_one_hot_labels_for_grow():
    images = np.random.default_rng(0).normal(size=(12, 8, 8, 1)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((images, np.eye(3)[np.arange(12) % 3])).batch(4)
    with pytest.raises(tf_gpp.DataError, match="one-hot.*tf.argmax"):
        tf_gpp.grow_network(ds, ds, (8, 8, 1), 3, max_rounds=0, verbose=0)


# -- files and the command line (F) ---------------------------------------------------
def test_F1_corrupt_keras_file(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip archive")
    assert "not a valid .keras file" in _cli_error(["inspect", str(bad)], capsys)


def test_F2_truncated_keras_file(model_file, tmp_path, capsys):
    data = model_file.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    assert "not a valid .keras file" in _cli_error(["inspect", str(cut)], capsys)
    with pytest.raises(ConversionError, match="could not load the Keras model"):
        to_tflite(str(cut), tmp_path / "cut.tflite")


def test_F3_keras_file_with_a_damaged_member(model_file, tmp_path, capsys):
    damaged = tmp_path / "damaged.keras"
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            dst.writestr(item, b"{broken json" if item.filename.endswith(".json") else payload)
    err = _cli_error(["inspect", str(damaged)], capsys)
    assert "damaged.keras" in err and ("cannot be loaded" in err or "not a valid .keras" in err)


def test_F4_unregistered_custom_layer_in_keras_file(tmp_path, capsys):
    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((6,))
    path = tmp_path / "custom.keras"
    keras.Model(inp, keras.layers.Dense(3)(Unregistered()(inp))).save(path)
    err = _cli_error(["inspect", str(path)], capsys)
    assert "custom.keras" in err and "custom class 'Unregistered'" in err and "register_keras_serializable" in err


def test_F5_lambda_keras_file_under_safe_mode(tmp_path, capsys):
    inp = keras.Input((6,))
    path = tmp_path / "lam.keras"
    keras.Model(inp, keras.layers.Dense(3)(keras.layers.Lambda(lambda t: t * 2.0)(inp))).save(path)
    assert "--unsafe" in _cli_error(["inspect", str(path)], capsys)
    with pytest.raises(ConversionError, match="safe_mode=True"):
        to_tflite(str(path), tmp_path / "lam.tflite")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_F6_corrupt_or_truncated_tflite(tmp_path, capsys, damage):
    good = to_tflite(_mlp(), tmp_path / "good.tflite").read_bytes()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes({"truncated": good[: len(good) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage])
    with pytest.raises(TFLiteFileError, match="bad.tflite"):
        load_interpreter(bad)
    assert "bad.tflite" in _cli_error(["bench", str(bad), "--runs", "2"], capsys)


def _digits_shaped(classes: int) -> keras.Model:
    inp = keras.Input((8, 8, 1))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inp))
    h = keras.layers.Dense(8, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h))


def test_F7_cli_request_errors_exit_2(tmp_path, capsys):
    digits10, digits3 = tmp_path / "d10.keras", tmp_path / "d3.keras"
    _digits_shaped(10).save(digits10)
    _digits_shaped(3).save(digits3)
    opts = ["--data", "digits", "--limit", "200", "--no-push", "--importance", "l1", "--finetune-epochs", "0"]
    assert "whole numbers" in _cli_error(["compress", str(digits10), *opts, "--target-macs", "1.5"], capsys)
    assert "rounds=0" in _cli_error(["compress", str(digits10), *opts, "--target-macs", "0.5", "--rounds", "0"],
                                    capsys)
    # a 3-class model given the 10 digit classes
    assert "lie in [0, 3)" in _cli_error(["compress", str(digits3), *opts, "--target-macs", "0.5"], capsys)


def test_F8_unknown_quantization_mode(tmp_path):
    with pytest.raises(ConversionError, match="quantization='int4'.*float16"):
        to_tflite(_mlp(), tmp_path / "m.tflite", quantization="int4")


def test_every_catalogue_error_is_a_tf_gpp_error():
    from tf_gpp.grow import GrowError

    for cls in (tf_gpp.DataError, tf_gpp.PruningRequestError, tf_gpp.UnsupportedModelError,
                tf_gpp.ArgumentError, ConversionError, TFLiteFileError, GrowError):
        assert issubclass(cls, tf_gpp.TfGppError), cls
    for cls in (tf_gpp.DataError, tf_gpp.PruningRequestError, tf_gpp.UnsupportedModelError,
                tf_gpp.ArgumentError, ConversionError):
        assert issubclass(cls, ValueError), cls  # callers catching ValueError keep working


# -- costs (S) -------------------------------------------------------------------------
def test_S1_unknown_input_size_is_refused_with_the_fix(tmp_path, capsys):
    inp = keras.Input((None, None, 3), name="photo")
    model = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    with pytest.raises(tf_gpp.ArgumentError, match=r"input 'photo'.*input_shape=\(H, W, 3\)"):
        tf_gpp.profile(model)
    path = tmp_path / "dyn.keras"
    model.save(path)
    assert "--input-shape" in _cli_error(["inspect", str(path)], capsys)
    assert tf_gpp.profile(model, input_shape=(9, 9, 3)).macs == 7 * 7 * 27 * 4


# -- data forms and classification targets (I) -----------------------------------------
def _batches(ds: tf.data.Dataset) -> list[np.ndarray]:
    parts = [[np.asarray(t) for t in tf.nest.flatten(b)] for b in ds]
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def test_I1_every_fit_form_is_accepted():
    x, y = _xy()
    w = np.linspace(0.5, 1.5, len(y)).astype("float32")
    forms = [((x, y),), (x, y), (tf.data.Dataset.from_tensor_slices((x, y)),),
             (tf.data.Dataset.from_tensor_slices({"image": x, "label": y}).batch(7),)]
    for args in forms:
        train, _, task = tf_gpp.data.as_training_data(_mlp(), *args, shuffle=False)
        for got, ref in zip(_batches(train), (x, y), strict=True):
            np.testing.assert_array_equal(got, ref)
        assert task.kind == "sparse" and task.num_classes == 3
    train, _, _ = tf_gpp.data.as_training_data(_mlp(), (x, y, w), shuffle=False)
    np.testing.assert_array_equal(_batches(train)[2], w)
    train, val, _ = tf_gpp.data.as_training_data(_mlp(), x, y, validation_split=0.25, shuffle=False)
    np.testing.assert_array_equal(_batches(val)[0], x[45:])


def test_I2_regression_targets_are_refused():
    x, _ = _xy()
    targets = np.random.default_rng(1).normal(size=(len(x), 3)).astype("float32")
    with pytest.raises(tf_gpp.DataError, match="looks like regression.*prunes classifiers.*importance='l1'"):
        tf_gpp.data.as_training_data(_mlp(), x, targets)


def test_I3_multi_hot_soft_and_multi_label_outputs_are_refused():
    x, y = _xy()
    multi = np.eye(3, dtype="float32")[y]
    multi[::3, (y[::3] + 1) % 3] = 1.0
    with pytest.raises(tf_gpp.DataError, match="multi-hot.*multi-label"):
        tf_gpp.data.as_training_data(_mlp(), x, multi)
    soft = np.full((len(y), 3), 0.2, "float32")
    soft[np.arange(len(y)), y] = 0.6
    with pytest.raises(tf_gpp.DataError, match="soft / probability rows.*argmax"):
        tf_gpp.data.as_training_data(_mlp(), x, soft)
    inp = keras.Input((6,))
    sigmoid = keras.Model(inp, keras.layers.Dense(3, activation="sigmoid")(inp))
    with pytest.raises(tf_gpp.UnsupportedModelError, match="sigmoid over 3 units.*softmax"):
        tf_gpp.data.as_training_data(sigmoid, x, y)


def _binary(activation: str | None) -> keras.Model:
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="h1")(inp)
    return keras.Model(inp, keras.layers.Dense(1, activation=activation, name="out")(h))


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_I4_binary_classifier_with_one_output_unit(activation):
    x, y = _xy(classes=2)
    _, _, task = tf_gpp.data.as_training_data(_binary(activation), x, y[:, None].astype("float32"))
    assert (task.kind, task.num_classes, task.probabilities) == ("binary", 2, activation == "sigmoid")
    assert isinstance(task.loss(), keras.losses.BinaryCrossentropy)
    from tf_gpp.graph.dependency import DependencyGraph

    imp = GPPUtility(utility="lda")
    model = _binary(activation)
    imp.prepare(model, DependencyGraph(model), (x, y))
    assert np.isfinite(imp.final_utility).all() and imp.final_utility.sum() > 0


def test_I5_binary_output_with_other_labels_or_a_one_unit_softmax():
    x, y = _xy()
    with pytest.raises(tf_gpp.DataError, match="classes other than 0/1.*Dense\\(C\\)"):
        tf_gpp.data.as_training_data(_binary("sigmoid"), x, y)
    with pytest.raises(tf_gpp.UnsupportedModelError, match="softmax over 1 unit.*sigmoid"):
        tf_gpp.data.as_training_data(_binary("softmax"), x, y % 2)


def test_I6_multi_output_model_needs_the_classifier_named():
    x, y = _xy()
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, [keras.layers.Dense(3, name="cls")(h), keras.layers.Dense(2, name="reg")(h)])
    labels = {"cls": y, "reg": np.zeros((len(y), 2), "float32")}
    with pytest.raises(tf_gpp.DataError, match=r"2 outputs.*output='cls'"):
        tf_gpp.data.as_training_data(model, x, labels)
    _, _, task = tf_gpp.data.as_training_data(model, x, labels, output="cls")
    np.testing.assert_array_equal(task.class_indices(labels), y)


def test_I7_unreadable_forms_name_the_fix():
    x, y = _xy()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    cases = [
        ((tf.data.Dataset.from_tensor_slices({"img": x, "cls": y}),), {}, r"ds.map\(lambda d"),
        ((ds,), {"validation_split": 0.2}, "array data only.*validation_data="),
        ((ds, y), {}, "must be inside it"),
        ((x,), {}, "without labels"),
        ((x[:, :4], y), {}, r"shape \(None, 4\).*expects \(None, 6\)"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(tf_gpp.DataError, match=match):
            tf_gpp.data.as_training_data(_mlp(), *args, **kwargs)


def _nested_cnn() -> keras.Model:
    inner_in = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inner_in)
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="bn")(x), name="inner")
    inner.trainable = False
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1, name="conv")(inp)
    x = inner(x, training=False)
    x = inner(x)  # called twice (shared weights)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def test_N1_nested_models_are_inlined():
    model = _nested_cnn()
    producers = {p for g in tf_gpp.channel_groups(model) for p in g.producers}
    assert "inner_conv" in producers  # renamed: 'conv' is the outer layer's name
    flat = tf_gpp.flatten_model(model)
    assert flat.get_layer("inner_conv").trainable is False and flat.get_layer("conv").trainable
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(flat(x), model(x), rtol=1e-5, atol=1e-6)


def test_N2_submodel_call_with_extra_arguments():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(2)(inner_in), name="inner")
    inp = keras.Input((4,))
    with pytest.warns(UserWarning):  # Keras: the sub-model does not support masking
        model = keras.Model(inp, inner(inp, mask=keras.ops.ones((1, 4), dtype="bool")))
    with pytest.raises(tf_gpp.UnsupportedModelError, match=r"sub-model 'inner'.*keywords \['mask'\]"):
        tf_gpp.channel_groups(model)


def test_N3_layer_shared_by_two_submodels():
    dense = keras.layers.Dense(4, name="shared")
    a_in, b_in = keras.Input((4,)), keras.Input((4,))
    a = keras.Model(a_in, dense(a_in), name="a")
    b = keras.Model(b_in, dense(b_in), name="b")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Add()([a(inp), b(inp)])))
    with pytest.raises(tf_gpp.UnsupportedModelError, match="'shared' is shared by sub-models 'a' and 'b'"):
        tf_gpp.flatten_model(model)


@keras.saving.register_keras_serializable(package="catalogue")
class _AttributeMean(keras.layers.Layer):
    def adapt(self, data):
        self.mean = np.asarray(data, dtype="float32").mean(axis=0)

    def call(self, x):
        return x - self.mean


def test_N4_adapted_state_that_cannot_be_copied():
    x, _ = _xy()
    center = _AttributeMean(name="center")
    center.adapt(x)
    inp = keras.Input((6,))
    h = keras.layers.Dense(5, activation="relu", name="h1")(center(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    with pytest.raises(tf_gpp.UnsupportedModelError, match=r"'center' \(_AttributeMean\).*save_own_variables"):
        tf_gpp.prune_channels(model, {"h1": [0]})


# -- small silent acceptances, the CLI on the user's own data, TFLite (M11, T8, F9-F14) --------
@pytest.mark.parametrize("indices, match", [([-1], "negative indices are not accepted"),
                                            ([1.5], r"whole numbers 0\.\.7, got 1\.5 \(float\)"),
                                            ([True], r"got True \(bool\)"), (True, r"got True \(bool\)")])
def test_M11_channel_indices_must_be_whole_non_negative_numbers(indices, match):
    with pytest.raises(tf_gpp.PruningRequestError, match=match):
        tf_gpp.prune_channels(_mlp(), {"h1": indices})


def test_T8_unknown_ignored_layer_names_close_matches():
    x, y = _xy()
    with pytest.raises(tf_gpp.PruningRequestError, match=r"'h11', which is not a layer of model 'mlp'; did you mean 'h1'"):
        tf_gpp.Pruner(_mlp(), importance="l1", ignored_layers=["h11"]).step(target_macs=0.5)
    with pytest.raises(tf_gpp.PruningRequestError, match="'hidden'.*not a layer"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, ignored_layers=["hidden"], **QUICK)
    with pytest.raises(tf_gpp.PruningRequestError, match=r"ignored_layers holds 3 \(int\)"):
        tf_gpp.prune.Constraints(ignored_layers=[3])
    # one string is one name, not a set of characters
    assert tf_gpp.prune.Constraints(ignored_layers="h1").ignored_layers == {"h1"}


def test_F9_cli_data_the_model_cannot_take(tmp_path, capsys):
    model = tmp_path / "m.keras"
    _digits_shaped(3).save(model)
    x = np.random.default_rng(0).random((30, 8, 8, 1), dtype=np.float32)
    cases = {
        "shape.npz": ({"x": x[:, :7], "y": np.arange(30) % 3}, "inputs of shape (None, 7, 8, 1)"),
        "dtype.npz": ({"x": x, "y": np.array(["a", "b", "c"] * 10)}, "'y' has dtype <U1"),
        "classes.npz": ({"x": x, "y": np.arange(30) % 5}, "labels must lie in [0, 3)"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        for command in (["compress", "--target-macs", "0.5"], ["convert"]):
            out = tmp_path / ("o.keras" if command[0] == "compress" else "o.tflite")
            err = _cli_error([command[0], str(model), "--data", str(tmp_path / name), "-o", str(out), *command[1:]],
                             capsys)
            assert message in err and "--data" in err, (name, command, err)


def test_F10_cli_compress_without_a_target(tmp_path, capsys):
    model = tmp_path / "m.keras"
    _digits_shaped(10).save(model)
    err = _cli_error(["compress", str(model), "--data", "digits"], capsys)
    assert "--target-macs or --target-params" in err and "--strategy threshold" in err


def test_F11_cli_convert_verification_failure_exits_3(tmp_path, capsys):
    """int8 outputs cannot separate logits 1000 + tiny differences: predictions collapse."""
    inp = keras.Input((6,))
    dense = keras.layers.Dense(4)
    model = keras.Model(inp, dense(inp))
    rng = np.random.default_rng(0)
    dense.set_weights([rng.normal(0, 1e-3, (6, 4)).astype("float32"), np.full(4, 1000.0, "float32")])
    x = rng.normal(size=(400, 6)).astype("float32")
    np.savez(tmp_path / "d.npz", x=x, y=model.predict(x, verbose=0).argmax(1))
    model.save(tmp_path / "m.keras")
    argv = ["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.tflite"), "--quantization", "int8",
            "--data", str(tmp_path / "d.npz")]
    assert cli(argv) == 3
    assert "verification FAILED" in capsys.readouterr().err


def test_F12_cli_unknown_dataset_or_missing_file(tmp_path, capsys):
    model = tmp_path / "m.keras"
    _digits_shaped(10).save(model)
    err = _cli_error(["compress", str(model), "--data", "imagenet_of_mine", "--target-macs", "0.5"], capsys)
    assert "unknown dataset 'imagenet_of_mine'" in err and ".npz" in err
    err = _cli_error(["convert", str(model), "--data", str(tmp_path / "nope.npz")], capsys)
    assert "no such file or folder" in err
    with pytest.raises(tf_gpp.DataError, match="unknown dataset"):
        tf_gpp.data.registry.get("imagenet_of_mine")


def test_F13_tflite_unsupported_ops_name_the_layer_and_the_fix(tmp_path, capsys):
    inp = keras.Input((5, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.SimpleRNN(4, name="rnn")(inp)))
    with pytest.raises(ConversionError) as info:
        to_tflite(model, tmp_path / "r.tflite")
    head, fix = str(info.value).splitlines()
    assert "layer 'rnn' (SimpleRNN)" in head and "unroll=True" in fix and "select_tf_ops=True" in fix
    assert info.value.__cause__ is not None  # the converter's output, for --verbose
    model.save(tmp_path / "r.keras")
    assert cli(["convert", str(tmp_path / "r.keras"), "-o", str(tmp_path / "r.tflite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "'rnn'" in err[0] and "--select-tf-ops" in err[1]


def test_F14_mixed_float16_model_converts_with_a_notice(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _mlp()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with pytest.warns(UserWarning, match="mixed-precision.*float32 copy"):
        path = to_tflite(model, tmp_path / "mixed.tflite")
    assert load_interpreter(path) is not None


# -- channels through norms and recurrent state (M12) --------------------------------------------
def test_M12_norm_over_channels_and_stateful_rnn_freeze_with_their_reason():
    from tf_gpp.handlers.layernorm import approximate_normalization

    inp = keras.Input((4, 6), batch_size=2)
    x = keras.layers.Dense(8, name="p")(inp)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.LSTM(5, stateful=True, name="rnn")(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(x))
    with pytest.raises(tf_gpp.PruningRequestError, match="'norm' \\(LayerNormalization\\) normalizes across channels"):
        tf_gpp.prune_channels(model, {"p": [0]})
    with pytest.raises(tf_gpp.PruningRequestError, match="'rnn' \\(LSTM\\) is stateful"):
        tf_gpp.prune_channels(model, {"rnn": [0]})
    with approximate_normalization():
        slim = tf_gpp.prune_channels(model, {"p": [0, 3]})
    assert slim.get_layer("norm").get_weights()[0].shape == (6,)


def test_M13_checkpoint_dir_of_a_run_with_other_options(tmp_path):
    x, y = _xy()
    ckpt = tmp_path / "ckpt"
    tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, checkpoint_dir=ckpt, **QUICK)
    before = {f.name: f.read_bytes() for f in ckpt.iterdir()}
    with pytest.raises(tf_gpp.PruningRequestError,
                       match=r"holds a run with other options.*importance='l1' there, 'bn_scale' now.*new checkpoint_dir"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, checkpoint_dir=ckpt, **{**QUICK, "importance": "bn_scale"})
    with pytest.raises(tf_gpp.PruningRequestError, match=r"distill=True there, False now"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), target_macs=0.5, distill=False, checkpoint_dir=ckpt, **QUICK)
    assert {f.name: f.read_bytes() for f in ckpt.iterdir()} == before
