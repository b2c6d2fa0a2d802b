import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent


def head(x):
    x = keras.layers.GlobalAveragePooling1D()(x) if len(x.shape) == 3 else keras.layers.Flatten()(x)
    return keras.layers.Dense(3, name="out")(x)


@pytest.mark.parametrize(
    "conv, shape",
    [(keras.layers.Conv1D, (12, 3)), (keras.layers.Conv2D, (8, 8, 3)), (keras.layers.Conv3D, (4, 4, 4, 2))],
)
def test_conv_chain(conv, shape):
    inp = keras.Input(shape)
    x = conv(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = conv(6, 3, padding="same", name="c2")(x)
    m = keras.Model(inp, head(x))
    slim = assert_equivalent(m, {"c1": [0, 2, 7], "c2": [5]})
    assert slim.get_layer("c1").filters == 5 and slim.get_layer("c2").filters == 5
    assert slim.get_layer("c2").kernel.shape[-2] == 5


def test_grouped_conv_keeps_groups_equal():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 1, name="c1")(inp)
    x = keras.layers.Conv2D(12, 3, groups=4, padding="same", name="g")(x)
    m = keras.Model(inp, head(x))
    groups = {tuple(g.producers): g for g in tf_gpp.channel_groups(m)}
    # 8 inputs in 4 groups: index i of every group goes together -> 2 units of 4 channels
    assert groups[("c1",)].size == 2
    assert [c.tolist() for c in groups[("c1",)].channels("c1")] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert groups[("g",)].size == 3
    slim = assert_equivalent(m, {"c1": [1], "g": [0]})
    assert slim.get_layer("g").kernel.shape == (3, 3, 1, 8)
    assert slim.get_layer("g").groups == 4


@pytest.mark.parametrize(
    "tconv, shape",
    [(keras.layers.Conv1DTranspose, (6, 3)), (keras.layers.Conv2DTranspose, (5, 5, 3)),
     (keras.layers.Conv3DTranspose, (3, 3, 3, 2))],
)
def test_conv_transpose(tconv, shape):
    conv = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[len(shape) - 1]
    inp = keras.Input(shape)
    x = conv(6, 1, name="c1")(inp)
    x = tconv(5, 3, strides=2, padding="same", name="t")(x)
    m = keras.Model(inp, head(x))
    slim = assert_equivalent(m, {"c1": [1, 4], "t": [0]})
    assert slim.get_layer("t").filters == 4


def test_depthwise_multiplier_and_separable():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="c1")(inp)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = keras.layers.SeparableConv2D(5, 3, depth_multiplier=3, padding="same", name="sep")(x)
    m = keras.Model(inp, head(x))
    g = next(g for g in tf_gpp.channel_groups(m) if g.producers == ["c1"])
    # channel c of c1 owns depthwise outputs 2c and 2c+1
    assert g.channels("dw")[1].tolist() == [2, 3]
    slim = assert_equivalent(m, {"c1": [0, 5], "sep": [2]})
    assert slim.get_layer("dw").kernel.shape == (3, 3, 4, 2)
    assert slim.get_layer("sep").pointwise_kernel.shape == (1, 1, 24, 4)


def test_depthwise_and_separable_1d():
    inp = keras.Input((10, 2))
    x = keras.layers.Conv1D(4, 1, name="c1")(inp)
    x = keras.layers.DepthwiseConv1D(3, padding="same", name="dw")(x)
    x = keras.layers.SeparableConv1D(3, 3, name="sep")(x)
    m = keras.Model(inp, head(x))
    assert_equivalent(m, {"c1": [3], "sep": [1]})


def test_channels_first_is_left_alone():
    inp = keras.Input((3, 8, 8))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", name="c1")(inp)
    x = keras.layers.Flatten()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert all("c1" not in g.producers for g in tf_gpp.channel_groups(m))
    with pytest.raises(tf_gpp.PruningRequestError, match="channels_first"):
        tf_gpp.prune_channels(m, {"c1": [0]})


def test_conv_macs():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    m = keras.Model(inp, x)
    p = tf_gpp.profile(m)
    rows = {r.name: r for r in p.layers}
    assert rows["c"].macs == 8 * 8 * 3 * 3 * 3 * 4
    assert rows["dw"].macs == 8 * 8 * 4 * 9
    assert p.params == m.count_params()
    assert "total" in str(p)
    np.testing.assert_equal(p.macs, rows["c"].macs + rows["dw"].macs)
