import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.handlers import IdentityLikeHandler
from tf_gpp.testing import assert_equivalent


@keras.saving.register_keras_serializable(package="tests")
class Scale(keras.layers.Layer):
    """A custom per-channel layer tf_gpp knows nothing about."""

    def build(self, input_shape):
        self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="s")

    def call(self, x):
        return x * self.s


def _model(middle):
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(5, 1, name="c1")(inp)
    x = middle(x)
    x = keras.layers.Conv2D(4, 1, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(x))


@pytest.mark.parametrize(
    "middle, name",
    [(keras.layers.Lambda(lambda t: t * 2.0, name="lam"), "lam"), (Scale(name="scale"), "scale")],
)
def test_unknown_layers_freeze_what_they_touch(middle, name):
    m = _model(middle)
    assert all("c1" not in g.producers for g in tf_gpp.channel_groups(m))
    with pytest.raises(tf_gpp.PruningRequestError, match=f"'{name}'.*no channel handler"):
        tf_gpp.prune_channels(m, {"c1": [0]})
    # the rest of the model is still prunable, and the unknown layer is rebuilt as it was
    slim = assert_equivalent(m, {"c2": [1]})
    assert slim.get_layer(name) is not m.get_layer(name)


def test_user_registered_handler():
    class ScaleHandler(IdentityLikeHandler):
        def weight_masks(self, layer, keep):
            return {"s": {0: keep.inputs[0]}}

    m = _model(Scale(name="scale"))
    m.get_layer("scale").set_weights([np.arange(1, 6, dtype="float32")])
    tf_gpp.register_handler(Scale)(ScaleHandler)
    try:
        slim = assert_equivalent(m, {"c1": [0, 3]})
        np.testing.assert_array_equal(slim.get_layer("scale").get_weights()[0], [2, 3, 5])
    finally:
        from tf_gpp.handlers.registry import _REGISTRY

        _REGISTRY.pop(Scale, None)


def test_nested_model_is_inlined():
    inner_in = keras.Input((6, 6, 5))
    inner = keras.Model(inner_in, keras.layers.Conv2D(5, 1, name="ic")(inner_in), name="inner")
    m = _model(inner)
    assert any("c1" in g.producers for g in tf_gpp.channel_groups(m))  # inlined: no longer opaque
    assert_equivalent(m, {"c1": [0]})
    assert_equivalent(m, {"c2": [0]})


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(tf_gpp.UnsupportedModelError, match="subclassed"):
        tf_gpp.channel_groups(net)
    assert issubclass(tf_gpp.UnsupportedModelError, ValueError)
