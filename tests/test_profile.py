import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp


def test_profile_counts_params_and_macs_per_layer():
    inp = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, name="c")(inp)  # 8x8x4
    x = keras.layers.SeparableConv2D(6, 3, name="s")(x)  # 6x6x6
    x = keras.layers.Flatten()(x)
    m = keras.Model(inp, keras.layers.Dense(5, name="d")(x))
    p = tf_gpp.profile(m)
    rows = {r.name: r for r in p.layers}
    assert rows["c"].macs == 8 * 8 * 4 * 27
    assert rows["s"].macs == 6 * 6 * 4 * 9 + 6 * 6 * 4 * 6
    assert rows["d"].macs == 216 * 5
    assert p.macs == sum(r.macs for r in p.layers)
    assert p.params == m.count_params()
    table = p.table()
    assert "SeparableConv2D" in table and f"{p.macs:,}" in table
    assert p.to_dict()["layers"][1]["name"] == "c"


def test_profile_shared_layer_counts_every_call():
    inp1, inp2 = keras.Input((5,)), keras.Input((5,))
    enc = keras.layers.Dense(6, name="enc")
    m = keras.Model([inp1, inp2], keras.layers.Add()([enc(inp1), enc(inp2)]))
    assert tf_gpp.profile(m).macs == 2 * 5 * 6


# -- input sizes: an unknown dimension is never priced as 1 -------------------------------
def _dynamic_conv(name: str = "pixels") -> keras.Model:
    inp = keras.Input((None, None, 3), name=name)
    return keras.Model(inp, keras.layers.Conv2D(8, 3, name="conv")(inp))


def test_dynamic_mobilenetv3_priced_at_input_shape_equals_static_build():
    dynamic = keras.applications.MobileNetV3Small(weights=None)
    assert dynamic.input.shape[1] is None  # Keras' default build is dynamic
    static = keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3))
    got = tf_gpp.profile(dynamic, input_shape=(224, 224, 3))
    ref = tf_gpp.profile(static)
    assert (got.macs, got.params) == (ref.macs, ref.params)
    assert ref.macs > 50_000_000  # the 224x224 figure, not a 1x1 one
    assert list(got.input_shapes.values()) == [(224, 224, 3)]
    assert "224x224x3" in got.table()
    assert list(got.to_dict()["input_shapes"].values()) == [[224, 224, 3]]


def test_dynamic_conv_refused_without_input_shape_and_priced_with_it():
    m = _dynamic_conv()
    with pytest.raises(tf_gpp.ArgumentError, match=r"'pixels'.*input_shape=\(H, W, 3\)"):
        tf_gpp.profile(m)
    p = tf_gpp.profile(m, input_shape=(32, 40, 3))
    assert p.macs == 30 * 38 * (3 * 3 * 3) * 8
    assert p.input_shapes == {"pixels": (32, 40, 3)}
    # a batch-inclusive shape is accepted too
    assert tf_gpp.profile(m, input_shape=(None, 32, 40, 3)).macs == p.macs


def test_input_shape_must_agree_with_fixed_dimensions():
    inp = keras.Input((16, 16, 3), name="img")
    m = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    assert tf_gpp.profile(m, input_shape=(16, 16, 3)).macs == tf_gpp.profile(m).macs
    with pytest.raises(tf_gpp.ArgumentError, match="'img'"):
        tf_gpp.profile(m, input_shape=(32, 32, 3))
    with pytest.raises(tf_gpp.ArgumentError, match="3 positive dimensions"):
        tf_gpp.profile(m, input_shape=(16, 16))


def test_multi_input_shapes_by_list_or_dict_and_from_data():
    a, b = keras.Input((None, None, 3), name="a"), keras.Input((None, 4), name="b")
    xa = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(5, 1, name="ca")(a))
    xb = keras.layers.Flatten()(keras.layers.Dense(2, name="db")(b))
    m = keras.Model([a, b], [xa, xb])
    expected = 6 * 7 * 3 * 5 + 9 * 4 * 2
    assert tf_gpp.profile(m, input_shape=[(6, 7, 3), (9, 4)]).macs == expected
    assert tf_gpp.profile(m, input_shape={"b": (9, 4), "a": (6, 7, 3)}).macs == expected
    with pytest.raises(tf_gpp.ArgumentError, match="2 inputs"):
        tf_gpp.profile(m, input_shape=(6, 7, 3))
    batch = {"a": np.zeros((2, 6, 7, 3)), "b": np.zeros((2, 9, 4))}
    shape = tf_gpp.input_shape_from_data(m, (batch, np.zeros(2)))
    assert shape == {"a": (6, 7, 3), "b": (9, 4)}
    assert tf_gpp.profile(m, input_shape=shape).macs == expected


def test_input_shape_from_arrays_and_datasets():
    m = _dynamic_conv()
    x = np.zeros((4, 12, 10, 3), "float32")
    assert tf_gpp.input_shape_from_data(m, x) == {"pixels": (12, 10, 3)}
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(4))).batch(2)
    assert tf_gpp.input_shape_from_data(m, ds) == {"pixels": (12, 10, 3)}
    with pytest.raises(tf_gpp.DataError, match="'pixels'"):
        tf_gpp.input_shape_from_data(m, x[0])


# -- layers without a pruning handler are priced (recurrent, attention, nested) ------------
def test_recurrent_layers_priced_per_timestep():
    t, f = 7, 6
    inp = keras.Input((t, f))
    h = keras.layers.SimpleRNN(3, return_sequences=True, name="rnn")(inp)
    h = keras.layers.GRU(4, return_sequences=True, name="gru")(h)
    h = keras.layers.Bidirectional(keras.layers.LSTM(5), name="bi")(h)
    m = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    rows = {r.name: r.macs for r in tf_gpp.profile(m).layers}
    assert rows["rnn"] == t * 1 * (f * 3 + 3 * 3)
    assert rows["gru"] == t * 3 * (3 * 4 + 4 * 4)
    assert rows["bi"] == 2 * t * 4 * (4 * 5 + 5 * 5)
    assert rows["out"] == 10 * 2
    assert tf_gpp.profile(m).unpriced == []


def test_unknown_sequence_length_is_refused_then_priced():
    inp = keras.Input((None, 6), name="tokens")
    m = keras.Model(inp, keras.layers.LSTM(4, name="lstm")(inp))
    with pytest.raises(tf_gpp.ArgumentError, match="'tokens'"):
        tf_gpp.profile(m)
    assert tf_gpp.profile(m, input_shape=(20, 6)).macs == 20 * 4 * (6 * 4 + 4 * 4)


def test_multi_head_attention_priced():
    q, v = keras.Input((5, 6)), keras.Input((7, 8))
    heads, key_dim = 2, 4
    m = keras.Model([q, v], keras.layers.MultiHeadAttention(heads, key_dim, name="mha")(q, v))
    projections = 5 * 6 * heads * key_dim + 2 * 7 * 8 * heads * key_dim + 5 * heads * key_dim * 6
    attention = 5 * 7 * heads * key_dim * 2  # Q K^T and the weighted sum of values
    assert tf_gpp.profile(m).macs == projections + attention


def test_nested_model_priced_once_per_call():
    sub_in = keras.Input((6, 6, 3))
    sub = keras.Model(sub_in, keras.layers.Conv2D(4, 3, name="inner")(sub_in), name="sub")
    inp = keras.Input((6, 6, 3))
    m = keras.Model(inp, keras.layers.Add()([sub(inp), sub(inp)]))
    assert tf_gpp.profile(m).macs == 2 * 4 * 4 * 27 * 4
    assert tf_gpp.profile(m).params == sub.count_params()


def test_transfer_learning_backbone_counted():
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    base.trainable = False
    m = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(5)])
    backbone = tf_gpp.profile(base).macs
    assert backbone > 100_000
    assert tf_gpp.profile(m).macs == backbone + 1280 * 5
    # the same backbone built dynamic and nested in a functional model, priced at the data's size
    dyn = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35)
    inp = keras.Input((None, None, 3))
    out = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(dyn(inp, training=False)))
    assert tf_gpp.profile(keras.Model(inp, out), input_shape=(32, 32, 3)).macs == backbone + 1280 * 5


class _Gain(keras.layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], shape[-1]))

    def call(self, x):
        return keras.ops.matmul(x, self.w)


def test_layers_without_a_cost_rule_are_listed_never_silent():
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(6, 1, name="c")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = _Gain(name="gain")(x)
    a, b = keras.layers.Dense(3, name="d1")(x), keras.layers.Dense(3, name="d2")(x)
    m = keras.Model(inp, keras.layers.Dot(axes=1, name="dot")([a, b]))
    p = tf_gpp.profile(m)
    assert {(u.name, u.class_name) for u in p.unpriced} == {("gain", "_Gain"), ("dot", "Dot")}
    assert "not priced" in p.table() and "gain (_Gain)" in p.table()
    assert p.to_dict()["unpriced"] == [vars(u) for u in p.unpriced]
    assert p.macs == 4 * 4 * 3 * 6 + 2 * 6 * 3  # weightless layers cost 0 and are not listed


def test_one_cost_type_for_prune_grow_and_profile():
    """One ``Cost(params, macs)``: the schedules', the pruner's and grow's are the same type."""
    from tf_gpp.grow import Cost as GrowCost
    from tf_gpp.profile import Cost
    from tf_gpp.prune.schedules import Cost as ScheduleCost

    assert GrowCost is ScheduleCost is Cost
    target = Cost(macs=100)
    assert Cost(10, 100) == Cost(params=10, macs=100)
    assert target.reached_by(Cost(params=10**9, macs=100)) and not target.reached_by(Cost(params=1, macs=101))
