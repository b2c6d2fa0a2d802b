import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent, reloaded


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
    [keras.layers.LayerNormalization(name="n"), keras.layers.UnitNormalization(name="n")],
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


def _group_norm_model() -> keras.Model:
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = keras.layers.GroupNormalization(groups=4, name="gn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 1, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(x))
    rng = np.random.default_rng(0)
    gn = m.get_layer("gn")
    gn.set_weights([rng.normal(size=8) + 1.0, rng.normal(size=8)])  # non-trivial gamma, beta
    return m


def test_group_normalization_prunes_whole_groups_exactly():
    m = _group_norm_model()
    (g,) = [g for g in tf_gpp.channel_groups(m) if g.producers == ["c1"]]
    assert g.size == 4 and "gn" in g.consumers  # units are the 4 groups of 2 channels
    assert [p.tolist() for p in g.channels("c1")] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    slim = tf_gpp.prune_channels(m, {"c1": [3]})  # asks for one channel: its whole group goes
    assert slim.get_layer("c1").filters == 6 and slim.get_layer("gn").groups == 3
    # independent reference: the original saved and reloaded, group 1 (channels 2, 3) zeroed by hand
    ref = reloaded(m)
    k, b = ref.get_layer("c1").get_weights()
    k[..., 2:4], b[2:4] = 0, 0
    ref.get_layer("c1").set_weights([k, b])
    gamma, beta = ref.get_layer("gn").get_weights()
    gamma[2:4], beta[2:4] = 0, 0
    ref.get_layer("gn").set_weights([gamma, beta])
    x = np.random.default_rng(1).normal(size=(4, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(slim.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    # other plans through the handlers' own masks, and two whole groups at once
    assert assert_equivalent(m, {"c1": [0, 7]}).get_layer("gn").groups == 2
