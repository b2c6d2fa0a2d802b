import keras
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent


def _with(layer, shape=(6, 6, 3)):
    inp = keras.Input(shape)
    x = keras.layers.Conv2D(6, 1, name="c1")(inp)
    x = keras.layers.ReLU()(layer(x))  # (LN over H then a mean over H would cancel to ~0)
    x = keras.layers.Conv2D(4, 1, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(x))


def test_batchnorm_sliced_with_trained_statistics():
    m = _with(keras.layers.BatchNormalization(name="bn"))
    bn = m.get_layer("bn")
    bn.set_weights([w + i + 0.5 for i, w in enumerate(bn.get_weights())])  # non-trivial stats
    g = next(g for g in tf_gpp.channel_groups(m) if g.producers == ["c1"])
    assert "bn" in g.consumers
    slim = assert_equivalent(m, {"c1": [0, 4]})
    assert slim.get_layer("bn").moving_variance.shape == (4,)


@pytest.mark.parametrize(
    "layer",
    [keras.layers.LayerNormalization(name="n"), keras.layers.GroupNormalization(groups=2, name="n"),
     keras.layers.UnitNormalization(name="n")],
)
def test_channel_mixing_normalizations_freeze_their_input(layer):
    m = _with(layer)
    assert all("c1" not in g.producers for g in tf_gpp.channel_groups(m))
    with pytest.raises(tf_gpp.PruningRequestError, match="'n'"):
        tf_gpp.prune_channels(m, {"c1": [0]})
    assert_equivalent(m, {"c2": [1]})


def test_layernorm_over_other_axis_passes_channels():
    m = _with(keras.layers.LayerNormalization(axis=1, name="n"))
    assert any("c1" in g.producers for g in tf_gpp.channel_groups(m))
    assert_equivalent(m, {"c1": [2]})


def test_rescaling_and_normalization_after_input():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="rs")(inp)
    x = keras.layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="norm")(x)
    x = keras.layers.Conv2D(5, 3, name="c1")(x)
    x = keras.layers.Rescaling(2.0, offset=1.0, name="rs2")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    (g,) = tf_gpp.channel_groups(m)
    assert g.producers == ["c1"] and "rs2" in g.consumers
    assert_equivalent(m, {"c1": [0, 1]})
