import keras
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent


def _head(x):
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(2, name="out")(x)


@pytest.mark.parametrize(
    "merge", [keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average,
              keras.layers.Maximum, keras.layers.Minimum],
)
def test_elementwise_merge_couples_branches(merge):
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(5, 1, name="a")(inp)
    b = keras.layers.Conv2D(5, 3, padding="same", name="b")(inp)
    x = merge(name="m")([a, b])
    x = keras.layers.Conv2D(4, 1, name="c")(x)
    m = keras.Model(inp, _head(x))
    g = next(g for g in tf_gpp.channel_groups(m) if "a" in g.producers)
    assert g.producers == ["a", "b"] and g.size == 5
    slim = assert_equivalent(m, {"b": [0, 3]})  # naming one branch prunes both
    assert slim.get_layer("a").filters == 3 and slim.get_layer("b").filters == 3


def test_resnet_style_residual_chain():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(6, 1, name="stem")(inp)
    for i in range(2):
        y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"r{i}a")(x)
        y = keras.layers.Conv2D(6, 3, padding="same", name=f"r{i}b")(y)
        x = keras.layers.Add(name=f"add{i}")([x, y])
    m = keras.Model(inp, _head(x))
    residual = next(g for g in tf_gpp.channel_groups(m) if "stem" in g.producers)
    assert residual.producers == ["stem", "r0b", "r1b"]
    assert_equivalent(m, {"stem": [0, 5], "r0a": [1], "r1a": [0, 2]})


def test_squeeze_excite_broadcast_multiply():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 1, name="c1")(inp)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="sq")(x)
    s = keras.layers.Conv2D(2, 1, activation="relu", name="se_r")(s)
    s = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_e")(s)
    x = keras.layers.Multiply(name="excite")([x, s])
    m = keras.Model(inp, _head(x))
    g = next(g for g in tf_gpp.channel_groups(m) if "c1" in g.producers)
    assert g.producers == ["c1", "se_e"]
    assert_equivalent(m, {"c1": [1, 6], "se_r": [0]})


def test_se_with_reshape_and_width1_gate():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 1, name="c1")(inp)
    s = keras.layers.GlobalAveragePooling2D(name="sq")(x)
    s = keras.layers.Reshape((1, 1, 8), name="rs")(s)
    s = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_e")(s)
    x = keras.layers.Multiply(name="excite")([x, s])
    g1 = keras.layers.Conv2D(1, 1, activation="sigmoid", name="gate")(x)  # width-1 broadcast gate
    x = keras.layers.Multiply(name="gated")([x, g1])
    m = keras.Model(inp, _head(x))
    slim = assert_equivalent(m, {"c1": [0, 2, 3]})
    assert slim.get_layer("rs").target_shape == (1, 1, 5)
    with pytest.raises(tf_gpp.PruningRequestError, match="broadcast"):
        tf_gpp.prune_channels(m, {"gate": [0]})


def test_concatenate_on_channels_uses_offsets():
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(3, 1, name="a")(inp)
    b = keras.layers.Conv2D(4, 1, name="b")(inp)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.Conv2D(5, 1, name="c")(x)
    m = keras.Model(inp, _head(x))
    groups = {tuple(g.producers): g for g in tf_gpp.channel_groups(m)}
    assert groups[("b",)].channels("cat")[0].tolist() == [3]  # b's channel 0 sits at offset 3
    assert "c" in groups[("a",)].consumers and "c" in groups[("b",)].consumers
    slim = assert_equivalent(m, {"a": [2], "b": [0, 1]})
    assert slim.get_layer("c").kernel.shape[-2] == 4


def test_concatenate_on_other_axis_couples_channels():
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(inp)
    x = keras.layers.Concatenate(axis=1, name="cat")([a, b])
    x = keras.layers.Conv2D(5, 1, name="c")(x)
    m = keras.Model(inp, _head(x))
    g = next(g for g in tf_gpp.channel_groups(m) if "a" in g.producers)
    assert g.producers == ["a", "b"] and g.size == 4
    assert_equivalent(m, {"a": [1]})


def test_densenet_style_nested_concatenation():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, name="stem")(inp)
    for i in range(3):
        y = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        y = keras.layers.Conv2D(2, 3, padding="same", name=f"g{i}")(y)
        x = keras.layers.Concatenate(name=f"cat{i}")([x, y])
    m = keras.Model(inp, _head(x))
    assert_equivalent(m, {"stem": [0, 3], "g0": [1], "g2": [0]})
