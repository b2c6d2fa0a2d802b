import keras

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
