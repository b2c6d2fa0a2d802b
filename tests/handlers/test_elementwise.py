import keras
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent

CHANNELWISE_2D = [
    lambda: keras.layers.ReLU(),
    lambda: keras.layers.LeakyReLU(),
    lambda: keras.layers.ELU(),
    lambda: keras.layers.PReLU(),
    lambda: keras.layers.PReLU(shared_axes=[1, 2]),
    lambda: keras.layers.Activation("swish"),
    lambda: keras.layers.Dropout(0.3),
    lambda: keras.layers.SpatialDropout2D(0.3),
    lambda: keras.layers.GaussianNoise(0.1),
    lambda: keras.layers.GaussianDropout(0.1),
    lambda: keras.layers.ActivityRegularization(0.01),
    lambda: keras.layers.MaxPooling2D(2),
    lambda: keras.layers.AveragePooling2D(2),
    lambda: keras.layers.ZeroPadding2D(1),
    lambda: keras.layers.Cropping2D(1),
    lambda: keras.layers.UpSampling2D(2),
    lambda: keras.layers.Softmax(axis=1),
]


@pytest.mark.parametrize("make", CHANNELWISE_2D)
def test_channelwise_layers_pass_channels(make):
    layer = make()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="c1")(inp)
    x = layer(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    g = next(g for g in tf_gpp.channel_groups(m) if g.producers == ["c1"])
    assert layer.name in g.consumers
    assert_equivalent(m, {"c1": [1, 4]})


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_keepdims(keepdims):
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="c1")(inp)
    x = keras.layers.GlobalMaxPooling2D(keepdims=keepdims)(x)
    x = keras.layers.Flatten()(x) if keepdims else x
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert_equivalent(m, {"c1": [0, 5]})


@pytest.mark.parametrize(
    "pool, pad, shape",
    [
        (keras.layers.MaxPooling1D, keras.layers.ZeroPadding1D, (12, 2)),
        (keras.layers.AveragePooling3D, keras.layers.ZeroPadding3D, (4, 4, 4, 2)),
    ],
)
def test_1d_3d_pooling_and_padding(pool, pad, shape):
    conv = keras.layers.Conv1D if len(shape) == 2 else keras.layers.Conv3D
    inp = keras.Input(shape)
    x = conv(5, 1, name="c1")(inp)
    x = pad(1)(x)
    x = pool(2)(x)
    x = keras.layers.Flatten()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert_equivalent(m, {"c1": [2]})


def test_softmax_over_channels_freezes():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="c1")(inp)
    x = keras.layers.Softmax(name="sm")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    with pytest.raises(tf_gpp.PruningRequestError, match="sm"):
        tf_gpp.prune_channels(m, {"c1": [0]})


def test_keras_ops_in_the_graph():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="c1")(inp)
    x = keras.ops.relu(x + 3.0) * (1.0 / 6.0)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    assert_equivalent(m, {"c1": [0, 3]})
