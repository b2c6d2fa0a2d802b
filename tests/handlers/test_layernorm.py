"""Residual streams with LayerNormalization/RMSNormalization: frozen by default, prunable as one
group inside ``approximate_normalization()``, with the change the maths predicts."""

import keras
import numpy as np
import pytest

import tf_gpp
from tests.handlers.test_attention import FF, D, T, _inputs, _randomize, _run, _zero, transformer
from tf_gpp.convert import to_tflite
from tf_gpp.convert.interpreter import load_interpreter, predict
from tf_gpp.handlers.layernorm import approximate_normalization
from tf_gpp.testing import reloaded

EPS = 1e-3  # LayerNormalization's default epsilon


def norm_model(kind: str) -> keras.Model:
    inp = keras.Input((T, 8))
    x = keras.layers.Dense(D, name="p")(inp)
    if kind == "ln":
        x = keras.layers.LayerNormalization(epsilon=EPS, name="norm")(x)
    else:
        x = keras.layers.RMSNormalization(epsilon=EPS, name="norm")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def _by_hand(model: keras.Model, x: np.ndarray, keep: np.ndarray, kind: str) -> np.ndarray:
    """The model in numpy with the norm's statistics over the kept channels ``keep`` only."""
    wp, bp = model.get_layer("p").get_weights()
    wo, bo = model.get_layer("out").get_weights()
    h = (x @ wp + bp)[..., keep].astype(np.float64)
    if kind == "ln":
        gamma, beta = model.get_layer("norm").get_weights()
        y = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + EPS) * gamma[keep] + beta[keep]
    else:
        (scale,) = model.get_layer("norm").get_weights()
        y = h / np.sqrt(np.mean(h**2, -1, keepdims=True) + EPS) * scale[keep]
    return y @ wo[keep] + bo


@pytest.mark.parametrize("kind", ["ln", "rms"])
def test_norm_is_frozen_by_default_and_approximate_on_request(kind, tmp_path):
    m = norm_model(kind)
    _randomize(m)
    assert tf_gpp.channel_groups(m) == []
    with pytest.raises(tf_gpp.PruningRequestError, match="normalizes across channels"):
        tf_gpp.prune_channels(m, {"p": [0]})
    removed = [1, 4, 5, 10, 13]
    keep = np.setdiff1d(np.arange(D), removed)
    with approximate_normalization():
        (group,) = tf_gpp.channel_groups(m)
        assert group.producers == ["p"] and set(group.consumers) == {"norm", "out"}
        slim = tf_gpp.prune_channels(m, {"p": removed})
    assert tf_gpp.channel_groups(m) == []  # the opt-in ends with the block
    x = _inputs(m)[0]
    got = _run(slim, [x])
    # The pruned norm is the norm over the kept channels: exactly what the maths says.
    np.testing.assert_allclose(got, _by_hand(m, x, keep, kind), rtol=1e-4, atol=1e-4)
    # The zeroed original (removed channels exactly zero) normalizes over all D channels.
    ref = reloaded(m)
    _zero(ref, "p", "kernel", 1, removed)
    _zero(ref, "p", "bias", 0, removed)
    zeroed = _run(ref, [x])
    if kind == "rms":  # every kept output scaled by sqrt(K/D) (up to epsilon)
        ms = np.mean(ref.get_layer("p")(x).numpy() ** 2, -1, keepdims=True)  # over all D, zeros included
        ratio = np.sqrt(ms + EPS) / np.sqrt(ms * D / len(keep) + EPS)
        scaled = keras.Model(ref.input, ref.get_layer("norm").output)(x).numpy() * ratio
        wo, bo = ref.get_layer("out").get_weights()
        np.testing.assert_allclose(got, scaled @ wo + bo, rtol=1e-4, atol=1e-4)
    change = float(np.abs(got - zeroed).max() / np.abs(zeroed).max())
    assert change > 1e-3  # not the zeroed original: that is why it is opt-in
    assert slim.get_layer("norm").get_weights()[0].shape == (len(keep),)
    slim.save(tmp_path / "slim.keras")
    np.testing.assert_allclose(_run(keras.saving.load_model(tmp_path / "slim.keras"), [x]), got, atol=1e-6)


def test_residual_stream_without_norms_prunes_exactly(tmp_path):
    """Every Add, the attention's inputs and output and the MLP's in/out couple into one group."""
    m = transformer(ln=False)
    _randomize(m)
    groups = {tuple(sorted(g.producers)): g for g in tf_gpp.channel_groups(m)}
    stream = groups[("embed", "ff2", "mha")]
    assert stream.size == D and {"add1", "add2", "ff1", "head"} <= set(stream.consumers)
    removed = [0, 2, 7, 11]
    slim = tf_gpp.prune_channels(m, {"add2": removed})
    ref = reloaded(m)
    for part in ("query/kernel", "key/kernel", "value/kernel"):
        _zero(ref, "mha", part, 0, removed)
    _zero(ref, "ff1", "kernel", 0, removed)
    _zero(ref, "head", "kernel", 0, removed)
    xs = _inputs(m)
    np.testing.assert_allclose(_run(slim, xs), _run(ref, xs), rtol=1e-5, atol=1e-5)
    assert slim.get_layer("mha").get_config()["output_shape"] in (D - 4, (D - 4,), [D - 4])
    assert tf_gpp.profile(slim).macs < tf_gpp.profile(m).macs
    tfl = to_tflite(slim, tmp_path / "slim.tflite")  # the pruned attention converts
    np.testing.assert_allclose(predict(load_interpreter(tfl), xs[0]), _run(slim, xs), rtol=1e-4, atol=1e-4)


def test_transformer_stream_with_layernorm_prunes_under_the_opt_in(tmp_path):
    m = transformer()
    _randomize(m)
    with approximate_normalization():
        groups = {tuple(sorted(g.producers)): g for g in tf_gpp.channel_groups(m)}
        stream = groups[("embed", "ff2", "mha")]
        assert {"ln1", "ln2", "ln3", "add1", "add2"} <= set(stream.consumers)
        assert groups[("ff1",)].size == FF
        slim = tf_gpp.prune_channels(m, {"embed": [1, 3, 8, 9], "ff1": list(range(0, FF, 4))})
    for name in ("ln1", "ln2", "ln3"):
        assert [w.shape for w in slim.get_layer(name).get_weights()] == [(D - 4,), (D - 4,)]
    xs = _inputs(m)
    out = _run(slim, xs)
    assert out.shape == (4, 3) and np.all(np.isfinite(out))
    assert tf_gpp.profile(slim).macs < tf_gpp.profile(m).macs
    slim.save(tmp_path / "slim.keras")
    np.testing.assert_allclose(_run(keras.saving.load_model(tmp_path / "slim.keras"), xs), out, atol=1e-6)
