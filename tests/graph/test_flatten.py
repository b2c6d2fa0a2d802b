"""Nested sub-models (transfer learning) are inlined: flatten_model and the engine through it.

References are independent of tf_gpp's rebuild path: the original model saved
to .keras and reloaded by Keras, with removed channels zeroed by hand.
"""

import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.surgery import frozen_pruned_layers, frozen_pruned_message, unfreeze_layers

SIZE = 96


def _mini_backbone(name: str) -> keras.Model:
    """A MobileNetV2-like block (same layer names), fast to build: the default-suite backbone."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", use_bias=False, name="Conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn_Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    y = keras.layers.Conv2D(16, 1, use_bias=False, name="block_2_expand")(x)
    y = keras.layers.BatchNormalization(name="block_2_expand_BN")(y)
    y = keras.layers.ReLU(6.0, name="block_2_expand_relu")(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block_2_depthwise")(y)
    y = keras.layers.BatchNormalization(name="block_2_depthwise_BN")(y)
    y = keras.layers.ReLU(6.0, name="block_2_depthwise_relu")(y)
    y = keras.layers.Conv2D(8, 1, use_bias=False, name="block_2_project")(y)
    y = keras.layers.BatchNormalization(name="block_2_project_BN")(y)
    x = keras.layers.Add(name="block_2_add")([x, y])
    x = keras.layers.Conv2D(12, 1, use_bias=False, name="Conv_1")(x)
    x = keras.layers.BatchNormalization(name="Conv_1_bn")(x)
    return keras.Model(inp, keras.layers.ReLU(6.0, name="out_relu")(x), name=name)


def _backbone(kind: str, name: str = "backbone") -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "mobilenet":
        base = keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), alpha=0.35, name=name
        )
    else:
        base = _mini_backbone(name)
    # Non-trivial BatchNorm statistics, so a BN run in the wrong mode shows.
    rng = np.random.default_rng(1)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mm, mv = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape).astype("float32"),
                    rng.normal(0, 0.1, b.shape).astype("float32"),
                    rng.normal(0, 0.1, mm.shape).astype("float32"),
                    rng.uniform(0.5, 2.0, mv.shape).astype("float32"),
                ]
            )
    return base


# MobileNetV2 (alpha 0.35, weights=None) takes ~15 s per test here: slow suite; the
# MobileNetV2-like mini backbone runs the same checks in the default suite.
KINDS = ["mini", pytest.param("mobilenet", marks=pytest.mark.slow)]


def _sequential_model(kind: str) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            _backbone(kind),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(5, name="head"),
        ]
    )


def _frozen_functional_model(kind: str) -> keras.Model:
    base = _backbone(kind)
    base.trainable = False
    inp = keras.Input((SIZE, SIZE, 3))
    x = base(inp, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(5, name="head")(x))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")


def _reloaded(model: keras.Model, tmp_path) -> keras.Model:
    path = tmp_path / "original.keras"
    model.save(path)
    return keras.saving.load_model(path, compile=False)


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(), 1e-12)
    assert np.abs(a - b).max() / scale <= rtol, np.abs(a - b).max() / scale


@pytest.mark.parametrize("kind", KINDS)
def test_sequential_backbone_is_prunable_and_flat_equals_original(kind, images, tmp_path):
    m = _sequential_model(kind)
    groups = tf_gpp.channel_groups(m)
    assert len(groups) > 0
    assert any(p == "block_2_expand" for g in groups for p in g.producers)
    flat = tf_gpp.flatten_model(m)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    ref = _reloaded(m, tmp_path)
    for training in (False, True):
        _close(ref(images, training=training), flat(images, training=training))
    # the backbone's cost is counted (not 0 for an opaque nested layer)
    base_macs = tf_gpp.profile(m.layers[0]).macs
    assert tf_gpp.profile(m).macs == base_macs + 5 * m.layers[0].output.shape[-1]
    assert base_macs > 0


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_functional_backbone_keeps_trainable_flags_and_training_arg(kind, images, tmp_path):
    m = _frozen_functional_model(kind)
    assert len(tf_gpp.channel_groups(m)) > 0
    flat = tf_gpp.flatten_model(m)
    base = m.get_layer("backbone")
    for layer in base.layers[1:]:  # its InputLayer is replaced by the call's input
        assert flat.get_layer(layer.name).trainable is False, layer.name
    assert flat.get_layer("head").trainable
    assert {v.path for v in flat.trainable_weights} == {v.path for v in m.trainable_weights}
    # the inlined calls carry the sub-model call's training=False
    calls = {e["name"]: e["inbound_nodes"] for e in flat.get_config()["layers"]}
    assert calls["block_2_expand_BN"][0]["kwargs"].get("training") is False
    assert "training" not in calls["head"][0]["kwargs"]
    ref = _reloaded(m, tmp_path)
    for training in (None, False, True):
        _close(ref(images, training=training), flat(images, training=training))
    # the user's model is untouched
    assert any(isinstance(layer, keras.Model) for layer in m.layers)


@pytest.mark.parametrize("kind", KINDS)
def test_training_false_call_of_trainable_submodel_matches_keras(kind, images, tmp_path):
    """A trainable backbone called with training=False behaves as the original in every mode."""
    base = _backbone(kind)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inp, training=False))
    m = keras.Model(inp, keras.layers.Dense(3)(x))
    flat = tf_gpp.flatten_model(m)
    ref = _reloaded(m, tmp_path)
    for training in (None, False, True):
        _close(ref(images, training=training), flat(images, training=training))


def _zero_expand_channels(model: keras.Model, block: int, channels: list[int]) -> None:
    """Zero, by hand, everything that produces channels of block ``block``'s expansion:
    its expand conv filters, the BN after it, the depthwise filters and their BN."""
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    conv = base.get_layer(f"block_{block}_expand")
    (k,) = conv.get_weights()
    k[..., channels] = 0
    conv.set_weights([k])
    dw = base.get_layer(f"block_{block}_depthwise")
    (d,) = dw.get_weights()
    d[:, :, channels, :] = 0
    dw.set_weights([d])
    for bn_name in (f"block_{block}_expand_BN", f"block_{block}_depthwise_BN"):
        bn = base.get_layer(bn_name)
        gamma, beta, mm, mv = bn.get_weights()
        gamma[channels] = 0
        beta[channels] = 0
        bn.set_weights([gamma, beta, mm, mv])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["sequential", "frozen_functional"])
def test_prune_through_backbone_equals_zeroed_original(form, kind, images, tmp_path):
    m = _sequential_model(kind) if form == "sequential" else _frozen_functional_model(kind)
    channels = [0, 3, 7]
    slim = tf_gpp.prune_channels(m, {"block_2_expand": channels})
    before = m.layers[0] if form == "sequential" else m.get_layer("backbone")
    width = before.get_layer("block_2_expand").filters
    assert slim.get_layer("block_2_expand").filters == width - len(channels)
    assert slim.get_layer("block_2_depthwise").get_weights()[0].shape[2] == width - len(channels)
    ref = _reloaded(m, tmp_path)
    _zero_expand_channels(ref, 2, channels)
    for training in (False, True):
        _close(ref(images, training=training), slim(images, training=training))
    # frozen layers stay frozen in the rebuilt model; the pruned model saves and reloads
    if form == "frozen_functional":
        assert slim.get_layer("block_2_expand").trainable is False
    path = tmp_path / "slim.keras"
    slim.save(path)
    _close(slim(images), keras.saving.load_model(path, compile=False)(images))


def _conv_block(name: str, channels: int) -> keras.Model:
    inp = keras.Input((8, 8, channels))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    return keras.Model(inp, keras.layers.Conv2D(channels, 1, name="proj")(x), name=name)


def _two_level_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inner = _conv_block("inner", 4)
    mid_in = keras.Input((8, 8, 4))
    h = inner(mid_in)
    h = keras.layers.Conv2D(4, 1, name="conv")(h)  # collides with inner's 'conv'
    mid = keras.Model(mid_in, h, name="mid")
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)  # collides again
    x = mid(x)
    x = mid(x)  # the same sub-model twice: shared weights
    x = keras.Sequential([keras.layers.Conv2D(5, 3, name="conv"), keras.layers.ReLU()], name="seq")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def test_two_level_nesting_shared_submodel_and_name_rule(tmp_path):
    m = _two_level_model()
    flat = tf_gpp.flatten_model(m)
    names = [layer.name for layer in flat.layers]
    assert len(names) == len(set(names))
    # the outer layer keeps its name; inlined ones are prefixed with their sub-model on collision
    assert {"conv", "mid_conv", "inner_conv", "seq_conv", "bn", "proj"} <= set(names)
    # mid is called twice: its layers are shared (called twice), weights counted once
    assert len(flat.weights) == len(m.weights)
    assert flat.count_params() == m.count_params()
    x = np.random.default_rng(0).standard_normal((3, 8, 8, 3)).astype("float32")
    ref = _reloaded(m, tmp_path)
    for training in (False, True):
        _close(ref(x, training=training), flat(x, training=training))
    # pruning the doubly-nested conv (shared by both calls) equals zeroing it by hand
    slim = tf_gpp.prune_channels(m, {"inner_conv": [1, 4]})
    assert slim.get_layer("inner_conv").filters == 4
    ref = _reloaded(m, tmp_path)  # a fresh copy: training=True calls above moved BN statistics
    inner = ref.get_layer("mid").get_layer("inner")
    k, b = inner.get_layer("conv").get_weights()
    k[..., [1, 4]] = 0
    b[[1, 4]] = 0
    inner.get_layer("conv").set_weights([k, b])
    gamma, beta, mm, mv = inner.get_layer("bn").get_weights()
    gamma[[1, 4]] = 0
    beta[[1, 4]] = 0
    inner.get_layer("bn").set_weights([gamma, beta, mm, mv])
    _close(ref(x), slim(x))


def test_flat_layers_maps_names_to_the_nested_layers():
    m = _two_level_model()
    layers = tf_gpp.graph.flatten.flat_layers(m)
    assert layers["inner_conv"] is m.get_layer("mid").get_layer("inner").get_layer("conv")
    assert layers["conv"] is m.get_layer("conv")


@pytest.mark.filterwarnings("ignore:Layer 'inner'")
def test_submodel_called_with_extra_arguments_is_refused():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(2)(inner_in), name="inner")
    inp = keras.Input((4,))
    m = keras.Model(inp, inner(inp, mask=keras.ops.ones((1, 4), dtype="bool")))
    with pytest.raises(tf_gpp.UnsupportedModelError, match=r"sub-model 'inner'.*\['mask'\]"):
        tf_gpp.flatten_model(m)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(tf_gpp.UnsupportedModelError, match="functional"):
        tf_gpp.flatten_model(Net())


def test_frozen_pruned_layers_and_unfreezing_them():
    m = _frozen_functional_model("mini")
    request = {"block_2_expand": [0, 3]}
    names = frozen_pruned_layers(m, request)
    assert set(names) == {
        "block_2_expand", "block_2_expand_BN", "block_2_depthwise", "block_2_depthwise_BN", "block_2_project"
    }
    assert "block_2_expand" in frozen_pruned_message(names) and "unfreeze_pruned=True" in frozen_pruned_message(names)
    slim = tf_gpp.prune_channels(m, request)
    assert not slim.get_layer("block_2_expand").trainable
    unfrozen = unfreeze_layers(slim, names)
    assert set(unfrozen) == {"block_2_expand", "block_2_depthwise", "block_2_project"}
    assert slim.get_layer("block_2_expand").trainable and not slim.get_layer("block_2_expand_BN").trainable
    assert not slim.get_layer("Conv1").trainable  # not pruned: stays frozen
    trainable = {v.path.split("/")[0] for v in slim.trainable_weights}
    assert trainable == {"block_2_expand", "block_2_depthwise", "block_2_project", "head"}
    # the head of a non-frozen model: nothing frozen is pruned
    assert frozen_pruned_layers(_sequential_model("mini"), request) == []
