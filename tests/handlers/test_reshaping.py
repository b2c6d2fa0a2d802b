import keras
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent


def test_flatten_then_dense_rows_follow_channels():
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(5, 3, name="c1")(inp)  # 2x2x5
    x = keras.layers.Flatten(name="flat")(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    g = next(g for g in tf_gpp.channel_groups(m) if g.producers == ["c1"])
    assert g.channels("flat")[1].tolist() == [1, 6, 11, 16]
    slim = assert_equivalent(m, {"c1": [1, 3]})
    assert slim.get_layer("out").kernel.shape == (12, 2)


@pytest.mark.parametrize(
    "target, kept_shape",
    [((4, 5), (4, 3)), ((20,), (12,)), ((-1, 5), (4, 3)), ((2, 2, 5), (2, 2, 3))],
)
def test_channel_preserving_reshape(target, kept_shape):
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(5, 3, name="c1")(inp)
    x = keras.layers.Reshape(target, name="rs")(x)
    x = keras.layers.Flatten()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    slim = assert_equivalent(m, {"c1": [0, 4]})
    assert slim.get_layer("rs").output.shape[1:] == kept_shape


def test_channel_mixing_reshape_and_permute_freeze():
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inp)  # 2x2x4
    x = keras.layers.Reshape((4, 2, 2), name="mix")(x)
    y = keras.layers.Conv2D(6, 1, name="c2")(inp)
    y = keras.layers.Permute((3, 1, 2), name="perm")(y)
    x = keras.layers.Concatenate(axis=1)([keras.layers.Flatten()(x), keras.layers.Flatten()(y)])
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    for layer, why in (("c1", "mix"), ("c2", "perm")):
        with pytest.raises(tf_gpp.PruningRequestError, match=why):
            tf_gpp.prune_channels(m, {layer: [0]})


def test_permute_keeping_last_axis_and_repeat_vector():
    inp = keras.Input((4, 3, 2))
    x = keras.layers.Conv2D(5, 1, name="c1")(inp)
    x = keras.layers.Permute((2, 1, 3), name="perm")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.RepeatVector(3, name="rep")(x)
    x = keras.layers.Conv1D(4, 2, name="c2")(x)
    x = keras.layers.Flatten()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert_equivalent(m, {"c1": [4], "c2": [0]})


@pytest.mark.parametrize(
    "layer",
    [keras.layers.Cropping1D(1), keras.layers.UpSampling1D(2), keras.layers.ZeroPadding1D(2)],
)
def test_1d_spatial_layers(layer):
    inp = keras.Input((8, 2))
    x = keras.layers.Conv1D(4, 1, name="c1")(inp)
    x = keras.layers.Flatten()(layer(x))
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert_equivalent(m, {"c1": [0, 1]})


def test_3d_spatial_layers():
    inp = keras.Input((4, 4, 4, 2))
    x = keras.layers.Conv3D(4, 1, name="c1")(inp)
    x = keras.layers.UpSampling3D(2)(keras.layers.Cropping3D(1)(x))
    x = keras.layers.GlobalAveragePooling3D()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert_equivalent(m, {"c1": [3]})
