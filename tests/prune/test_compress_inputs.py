"""compress takes the data forms model.fit takes and binary classifiers, and refuses regression
targets and missing validation data (issue 13, items 3-4, through the one data intake)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp

QUICK = {"rounds": 1, "push_epochs": 1, "finetune_epochs": 1, "verbose": 0, "target_macs": 0.6}


def _xy(n: int = 60, classes: int = 3):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    return (rng.normal(size=(n, 6)) + y[:, None]).astype("float32"), y


def _mlp(units: int = 3, act: str | None = None) -> keras.Model:
    i = keras.Input((6,), name="pixels")
    h = keras.layers.Dense(16, activation="relu")(i)
    h = keras.layers.Dense(16, activation="relu")(h)
    return keras.Model(i, keras.layers.Dense(units, activation=act)(h))


@pytest.mark.parametrize("act", ["sigmoid", None])
def test_binary_classifier_with_one_output_unit(act):
    x, y = _xy(classes=2)
    res = tf_gpp.compress(_mlp(1, act), (x, y), (x, y), **QUICK)
    assert res.history[-1].macs_ratio <= 0.6
    p = np.asarray(res.model(x))[:, 0]
    acc = np.mean((p > (0.5 if act else 0.0)).astype(int) == y)  # by hand: threshold the one unit
    assert abs(acc - res.history[-1].accuracy) < 1e-6


def test_x_y_arguments_with_validation_split():
    x, y = _xy()
    assert tf_gpp.compress(_mlp(), x, y, validation_split=0.25, **QUICK).history


def test_unbatched_tfds_dict_and_input_dict_datasets():
    x, y = _xy()
    for ds in (tf.data.Dataset.from_tensor_slices((x, y)),
               tf.data.Dataset.from_tensor_slices({"image": x, "label": y}),
               tf.data.Dataset.from_tensor_slices(({"pixels": x}, y)).batch(16)):
        assert tf_gpp.compress(_mlp(), ds, ds, importance="gpp_lda", **QUICK).history


def test_two_input_model():
    x, y = _xy()
    xb = np.random.default_rng(1).normal(size=(60, 4)).astype("float32")
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(a),
                                    keras.layers.Dense(8, activation="relu")(b)])
    m = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Dense(8, activation="relu")(h)))
    assert tf_gpp.compress(m, ([x, xb], y), ({"a": x, "b": xb}, y), **QUICK).history


def test_regression_targets_refused():
    x, _ = _xy()
    with pytest.raises(tf_gpp.DataError, match="regression"):
        tf_gpp.compress(_mlp(3), x, np.random.default_rng(0).normal(size=(60, 3)), validation_split=0.2, **QUICK)


def test_missing_validation_refused_with_the_fix():
    x, y = _xy()
    with pytest.raises(tf_gpp.DataError, match="validation_split=0.1"):
        tf_gpp.compress(_mlp(), (x, y), **QUICK)


def test_unknown_ignored_layer_refused_before_any_training():
    x, y = _xy()

    class NoTraining(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise AssertionError("compress trained before refusing the typo")

    with pytest.raises(tf_gpp.PruningRequestError, match="dense_typo"):
        tf_gpp.compress(_mlp(), (x, y), (x, y), ignored_layers=["dense_typo"], callbacks=[NoTraining()], **QUICK)


def test_warns_when_no_round_is_within_tolerance():
    x, y = _xy(n=300)
    model = _mlp()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=30, verbose=0)
    with pytest.warns(UserWarning, match="no round stayed within max_accuracy_drop=0.0"):
        res = tf_gpp.compress(model, (x, y), (x, y), target_macs=0.05, rounds=1, push=False, finetune_epochs=0,
                              importance="random", max_accuracy_drop=0.0, max_pruning_ratio=1.0, verbose=0)
    assert res.smallest_within_tolerance is None and res.model is res.most_accurate


def _two_heads() -> keras.Model:
    i = keras.Input((6,), name="pixels")
    h = keras.layers.Dense(16, activation="relu", name="trunk1")(i)
    h = keras.layers.Dense(16, activation="relu", name="trunk2")(h)
    model = keras.Model(i, [keras.layers.Dense(3, name="cls")(h), keras.layers.Dense(2, name="reg")(h)])
    model.compile("adam", loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                "reg": "mse"})
    return model


@pytest.mark.parametrize("distill", [True, False])
def test_multi_output_model_with_the_classifier_named(distill):
    """A classifier head and a regression head on one trunk: the trunk is pruned, both heads are
    kept and trained (the regression head with its own compiled loss), the classifier is scored."""
    x, y = _xy()
    reg = np.stack([x[:, 0], x[:, 1]], axis=1)
    model = _two_heads()
    labels = {"cls": y, "reg": reg}
    res = tf_gpp.compress(model, (x, labels), (x, labels), output="cls", push=False, distill=distill,
                          importance="taylor", **{**QUICK, "push_epochs": 0})
    slim = res.model
    assert len(slim.outputs) == 2 and res.history[-1].macs_ratio <= 0.6
    assert slim.get_layer("trunk1").units < 16 or slim.get_layer("trunk2").units < 16
    cls_out, reg_out = (np.asarray(o) for o in slim(x))
    assert cls_out.shape == (60, 3) and reg_out.shape == (60, 2)
    acc = np.mean(cls_out.argmax(1) == y)  # by hand, from the returned model's classifier output
    assert abs(acc - res.history[-1].accuracy) < 1e-6
    # the user's model is untouched
    assert model.get_layer("trunk1").units == 16


def test_multi_output_model_refusals_name_the_fix():
    x, y = _xy()
    model = _two_heads()
    labels = {"cls": y, "reg": np.zeros((60, 2), "float32")}
    with pytest.raises(tf_gpp.DataError, match="output='cls'"):
        tf_gpp.compress(model, (x, labels), (x, labels), push=False, **QUICK)
    with pytest.raises(tf_gpp.UnsupportedModelError, match="push=False"):
        tf_gpp.compress(model, (x, labels), (x, labels), output="cls", push=True, **QUICK)
