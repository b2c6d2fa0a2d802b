import keras
import numpy as np

import tf_gpp
from tf_gpp.testing import assert_equivalent


def mlp(rank3: bool = False) -> keras.Model:
    shape = (5, 12) if rank3 else (12,)
    inp = keras.Input(shape)
    x = keras.layers.Dense(16, activation="relu", name="d1")(inp)
    x = keras.layers.Dense(8, activation="tanh", name="d2")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def test_dense_chain_groups_and_equivalence():
    m = mlp()
    groups = tf_gpp.channel_groups(m)
    assert [(g.producers, g.consumers, g.size) for g in groups] == [
        (["d1"], ["d2"], 16),
        (["d2"], ["out"], 8),
    ]
    slim = assert_equivalent(m, {"d1": [0, 3, 5], "d2": [7]})
    assert slim.get_layer("d1").units == 13
    assert slim.get_layer("d2").get_weights()[0].shape == (13, 7)


def test_dense_on_3d_inputs():
    m = mlp(rank3=True)
    slim = assert_equivalent(m, {"d1": list(range(0, 16, 2))})
    assert slim.output_shape == (None, 5, 3)
    assert tf_gpp.profile(slim).macs < tf_gpp.profile(m).macs


def test_softmax_activation_freezes_outputs():
    inp = keras.Input((6,))
    x = keras.layers.Dense(5, activation="softmax", name="soft")(inp)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert tf_gpp.channel_groups(m) == []


def test_embedding_output_dim_pruned():
    inp = keras.Input((7,), dtype="int32")
    x = keras.layers.Embedding(20, 6, name="emb")(inp)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    (g,) = tf_gpp.channel_groups(m)
    assert g.producers == ["emb"] and g.size == 6
    x = np.random.default_rng(0).integers(0, 20, size=(4, 7)).astype("int32")
    slim = assert_equivalent(m, {"emb": [1, 4]}, [x])
    assert slim.get_layer("emb").output_dim == 4
