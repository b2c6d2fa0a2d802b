"""Transformer blocks: MLP hidden units, MultiHeadAttention's model-dimension channels and heads.

References are independent of the rebuild path: the original saved and reloaded by Keras,
the removed units' outgoing weights zeroed by hand in numpy.
"""

import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.convert import to_tflite
from tf_gpp.convert.interpreter import load_interpreter, predict
from tf_gpp.testing import reloaded

T, D_IN, D, FF, HEADS, KEY_DIM = 6, 8, 16, 32, 4, 4


def transformer(ln: bool = True) -> keras.Model:
    """A ViT-like block: embedding, pre-norm attention and MLP on a residual stream, classifier."""
    norm = (lambda name: keras.layers.LayerNormalization(name=name)) if ln else (
        lambda name: keras.layers.Identity(name=name))
    inp = keras.Input((T, D_IN))
    x = keras.layers.Dense(D, name="embed")(inp)
    h = norm("ln1")(x)
    a = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="mha")(h, h)
    x = keras.layers.Add(name="add1")([x, a])
    h = norm("ln2")(x)
    h = keras.layers.Dense(FF, activation="gelu", name="ff1")(h)
    h = keras.layers.Dense(D, name="ff2")(h)
    x = keras.layers.Add(name="add2")([x, h])
    x = norm("ln3")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(x))


def attention_model(heads: int = HEADS) -> keras.Model:
    """Cross-attention with no norm: projections in, attention, a Dense after."""
    q_in, kv_in = keras.Input((T, D_IN)), keras.Input((T + 2, D_IN))
    q = keras.layers.Dense(D, name="q_proj")(q_in)
    kv = keras.layers.Dense(12, name="kv_proj")(kv_in)
    a = keras.layers.MultiHeadAttention(heads, KEY_DIM, value_dim=3, name="mha")(q, kv)
    x = keras.layers.Dense(5, activation="relu", name="post")(a)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model([q_in, kv_in], keras.layers.Dense(3, name="head")(x))


def _inputs(model: keras.Model, n: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, *t.shape[1:])).astype("float32") for t in model.inputs]


def _zero(model: keras.Model, layer: str, weight: str, axis: int, index: list[int]) -> None:
    """In place: entries ``index`` along ``axis`` of weight ``weight`` (a path suffix) set to 0."""
    lay = model.get_layer(layer)
    values = lay.get_weights()
    for i, v in enumerate(lay.weights):
        if v.path.endswith(weight):
            sl = [slice(None)] * values[i].ndim
            sl[axis] = index
            values[i][tuple(sl)] = 0
    lay.set_weights(values)


def _run(model: keras.Model, xs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(model(xs if len(xs) > 1 else xs[0], training=False))


def _randomize(model: keras.Model, seed: int = 1) -> None:
    """Non-zero biases everywhere (Keras initializes them to zero, which would hide bias bugs)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + 0.1 * rng.standard_normal(w.shape).astype(w.dtype) for w in layer.get_weights()])


def test_mlp_hidden_units_are_a_group_and_prune_exactly(tmp_path):
    m = transformer()
    _randomize(m)
    groups = {tuple(g.producers): g for g in tf_gpp.channel_groups(m)}
    assert ("ff1",) in groups and groups[("ff1",)].size == FF and groups[("ff1",)].consumers == ["ff2"]
    # Default: LayerNormalization freezes the residual stream (and thus the attention's channels);
    # the heads, inside the layer, stay units
    assert not any("embed" in g.producers or ("mha" in g.producers and not g.internal) for g in groups.values())
    removed = [0, 3, 4, 9, 17, 30]
    slim = tf_gpp.prune_channels(m, {"ff1": removed})
    ref = reloaded(m)
    _zero(ref, "ff2", "kernel", 0, removed)  # the removed units' outgoing weights
    xs = _inputs(m)
    np.testing.assert_allclose(_run(slim, xs), _run(ref, xs), rtol=1e-5, atol=1e-5)
    assert slim.get_layer("ff1").units == FF - len(removed)
    k = len(removed)
    assert tf_gpp.profile(m).macs - tf_gpp.profile(slim).macs == T * (D * k + k * D)
    path = tmp_path / "slim.keras"
    slim.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_allclose(_run(back, xs), _run(slim, xs), rtol=1e-6, atol=1e-6)
    tfl = to_tflite(slim, tmp_path / "slim.tflite")
    np.testing.assert_allclose(predict(load_interpreter(tfl), xs[0]), _run(slim, xs), rtol=1e-4, atol=1e-4)


def test_attention_input_and_output_channels_prune_exactly(tmp_path):
    m = attention_model()
    _randomize(m)
    groups = {tuple(g.producers): g for g in tf_gpp.channel_groups(m) if not g.internal}
    assert groups[("q_proj",)].consumers == ["mha"] and groups[("kv_proj",)].consumers == ["mha"]
    assert groups[("mha",)].size == D and groups[("mha",)].consumers == ["post"]
    request = {"q_proj": [1, 5, 6], "kv_proj": [0, 11], "mha": [2, 3, 15]}
    slim = tf_gpp.prune_channels(m, request)
    ref = reloaded(m)
    _zero(ref, "mha", "query/kernel", 0, request["q_proj"])
    _zero(ref, "mha", "key/kernel", 0, request["kv_proj"])
    _zero(ref, "mha", "value/kernel", 0, request["kv_proj"])
    _zero(ref, "post", "kernel", 0, request["mha"])
    xs = _inputs(m)
    np.testing.assert_allclose(_run(slim, xs), _run(ref, xs), rtol=1e-5, atol=1e-5)
    layer = slim.get_layer("mha")
    assert layer.get_config()["output_shape"] in (D - 3, (D - 3,), [D - 3])
    kernels = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in layer.weights}
    assert kernels["query/kernel"] == (D - 3, HEADS, KEY_DIM)
    assert kernels["key/kernel"] == (10, HEADS, KEY_DIM) and kernels["value/kernel"] == (10, HEADS, 3)
    assert kernels["attention_output/kernel"] == (HEADS, 3, D - 3)
    # MACs: projections shrink with the widths; the T*S*H*(key_dim+value_dim) products stay.
    s = T + 2
    saved = T * 3 * HEADS * KEY_DIM + s * 2 * HEADS * (KEY_DIM + 3) + T * HEADS * 3 * 3
    saved += T * D_IN * 3 + s * D_IN * 2 + T * 3 * 5  # q_proj, kv_proj columns; post rows
    assert tf_gpp.profile(m).macs - tf_gpp.profile(slim).macs == saved
    path = tmp_path / "slim.keras"
    slim.save(path)
    np.testing.assert_allclose(_run(keras.saving.load_model(path), xs), _run(slim, xs), rtol=1e-6, atol=1e-6)


def test_attention_masks_and_scores_are_not_pruned():
    q_in = keras.Input((T, D_IN))
    mask = keras.Input((T, T), dtype="bool")
    q = keras.layers.Dense(D, name="q_proj")(q_in)
    a, scores = keras.layers.MultiHeadAttention(2, 4, name="mha")(
        q, q, attention_mask=mask, return_attention_scores=True)
    x = keras.layers.Flatten(name="flat")(scores)
    y = keras.layers.Concatenate(name="cat")([keras.layers.GlobalAveragePooling1D(name="gap")(a), x])
    m = keras.Model([q_in, mask], keras.layers.Dense(2, name="head")(y))
    groups = {tuple(g.producers): g for g in tf_gpp.channel_groups(m) if not g.internal}
    assert ("q_proj",) in groups  # the query/value input stays prunable
    internal = [key for g in tf_gpp.channel_groups(m) for key in g.internal.values()]
    assert internal == ["value_dims"]  # per-head scores are returned: heads frozen
    with pytest.raises(tf_gpp.PruningRequestError):
        tf_gpp.prune_channels(m, {"flat": [0]})  # the scores are frozen
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, T, D_IN)).astype("float32"), rng.random((2, T, T)) > 0.3]
    slim = tf_gpp.prune_channels(m, {"q_proj": [0, 7]})
    ref = reloaded(m)
    for part in ("query/kernel", "key/kernel", "value/kernel"):
        _zero(ref, "mha", part, 0, [0, 7])
    np.testing.assert_allclose(np.asarray(slim(xs)), np.asarray(ref(xs)), rtol=1e-5, atol=1e-5)


def test_attention_profile_counts_projections_and_products():
    m = attention_model()
    row = next(r for r in tf_gpp.profile(m).layers if r.name == "mha")
    s = T + 2
    want = T * D * HEADS * KEY_DIM + s * 12 * HEADS * KEY_DIM + s * 12 * HEADS * 3 + T * HEADS * 3 * D
    assert row.macs == want + T * s * HEADS * (KEY_DIM + 3)


def _heads_group(dep: tf_gpp.DependencyGraph, key: str = "heads") -> tf_gpp.ChannelGroup:
    (group,) = [g for g in dep.groups if key in g.internal.values()]
    return group


def test_attention_heads_are_units_and_prune_exactly(tmp_path):
    from tf_gpp.surgery import rebuild

    m = attention_model()
    _randomize(m)
    dep = tf_gpp.DependencyGraph(m)
    heads = _heads_group(dep)
    assert heads.internal == {"mha": "heads"} and heads.size == HEADS and heads.producers == ["mha"]
    out_group = next(g for g in dep.groups if not g.internal and "mha" in g.producers)
    # heads 1 and 3, and output channels 2 and 9, in one plan
    removed = dep.removed_units({heads.index: [1, 3], out_group.index: [2, 9]})
    slim = rebuild(dep, removed)
    ref = reloaded(m)
    _zero(ref, "mha", "attention_output/kernel", 0, [1, 3])  # a head's only way out
    _zero(ref, "post", "kernel", 0, [2, 9])
    xs = _inputs(m)
    np.testing.assert_allclose(_run(slim, xs), _run(ref, xs), rtol=1e-5, atol=1e-5)
    layer = slim.get_layer("mha")
    assert layer.get_config()["num_heads"] == HEADS - 2
    kernels = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in layer.weights}
    assert kernels["query/kernel"] == (D, 2, KEY_DIM) and kernels["query/bias"] == (2, KEY_DIM)
    assert kernels["key/kernel"] == (12, 2, KEY_DIM) and kernels["value/kernel"] == (12, 2, 3)
    assert kernels["attention_output/kernel"] == (2, 3, D - 2) and kernels["attention_output/bias"] == (D - 2,)
    # MACs: what a 2-head layer built directly costs, less the two output channels (post's rows too)
    fresh = tf_gpp.profile(attention_model(heads=2)).macs
    assert tf_gpp.profile(slim).macs == fresh - 2 * (T * 2 * 3) - 2 * (T * 5)
    path = tmp_path / "slim.keras"
    slim.save(path)
    np.testing.assert_allclose(_run(keras.saving.load_model(path), xs), _run(slim, xs), rtol=1e-6, atol=1e-6)


def test_attention_heads_in_a_transformer_block_prune_exactly_and_convert(tmp_path):
    from tf_gpp.surgery import rebuild

    m = transformer()
    _randomize(m)
    dep = tf_gpp.DependencyGraph(m)
    heads = _heads_group(dep)  # heads are units even with the residual stream frozen by LayerNorm
    slim = rebuild(dep, dep.removed_units({heads.index: [0, 2]}))
    ref = reloaded(m)
    _zero(ref, "mha", "attention_output/kernel", 0, [0, 2])
    xs = _inputs(m)
    np.testing.assert_allclose(_run(slim, xs), _run(ref, xs), rtol=1e-5, atol=1e-5)
    tfl = to_tflite(slim, tmp_path / "slim.tflite")
    np.testing.assert_allclose(predict(load_interpreter(tfl), xs[0]), _run(slim, xs), rtol=1e-4, atol=1e-4)


def _output_kernel_gradient(model: keras.Model, xs: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The attention output kernel and the cross-entropy's gradient w.r.t. it, on one batch."""
    import tensorflow as tf

    kernel = next(w for w in model.get_layer("mha").weights if w.path.endswith("attention_output/kernel"))
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(xs, training=False))
    return np.asarray(kernel), np.asarray(tape.gradient(loss, kernel))


def test_head_scores_l1_and_taylor_against_hand_computed():
    from tf_gpp.importance import GPPUtility, L1Norm, Taylor

    m = attention_model()
    _randomize(m)
    dep = tf_gpp.DependencyGraph(m)
    heads = _heads_group(dep)
    kernels = {w.path.split("/")[-2] + "/" + w.name: np.abs(np.asarray(w)) for w in m.get_layer("mha").weights}
    want = sum(kernels[f"{p}/kernel"].transpose(1, 0, 2).reshape(HEADS, -1).sum(1) for p in ("query", "key", "value"))
    want = want + kernels["attention_output/kernel"].reshape(HEADS, -1).sum(1)
    l1 = L1Norm()
    l1.prepare(m, dep)
    np.testing.assert_allclose(l1(dep, heads), want, rtol=1e-5)

    xs = _inputs(m, n=32, seed=3)
    y = np.random.default_rng(4).integers(0, 3, 32)
    taylor = Taylor(batch_size=64)
    taylor.prepare(m, dep, (xs, y))
    kernel, grad = _output_kernel_gradient(reloaded(m), xs, y)
    first_order = (kernel * grad).reshape(HEADS, -1).sum(1)
    np.testing.assert_allclose(taylor(dep, heads), first_order**2, rtol=1e-4, atol=1e-12)

    gpp = GPPUtility(utility="lda", feature_layer="gap")
    gpp.prepare(m, dep, (xs, y))
    scores = gpp(dep, heads)
    assert scores.shape == (HEADS,) and np.all(np.isfinite(scores)) and scores.max() > 0


def test_attention_value_dims_are_units_and_prune_exactly(tmp_path):
    from tf_gpp.importance import L1Norm, Taylor
    from tf_gpp.surgery import rebuild

    m = attention_model()
    _randomize(m)
    dep = tf_gpp.DependencyGraph(m)
    dims = _heads_group(dep, "value_dims")
    assert dims.internal == {"mha": "value_dims"} and dims.size == 3
    heads = _heads_group(dep)
    slim = rebuild(dep, dep.removed_units({dims.index: [1], heads.index: [2]}))
    ref = reloaded(m)
    _zero(ref, "mha", "attention_output/kernel", 1, [1])  # value dimension 1 of every head
    _zero(ref, "mha", "attention_output/kernel", 0, [2])
    xs = _inputs(m)
    np.testing.assert_allclose(_run(slim, xs), _run(ref, xs), rtol=1e-5, atol=1e-5)
    layer = slim.get_layer("mha")
    assert layer.get_config()["value_dim"] == 2 and layer.get_config()["key_dim"] == KEY_DIM
    kernels = {w.path.split("/")[-2] + "/" + w.name: tuple(w.shape) for w in layer.weights}
    assert kernels["value/kernel"] == (12, HEADS - 1, 2) and kernels["value/bias"] == (HEADS - 1, 2)
    assert kernels["key/kernel"] == (12, HEADS - 1, KEY_DIM)
    assert kernels["attention_output/kernel"] == (HEADS - 1, 2, D)
    q_in, kv_in = keras.Input((T, D_IN)), keras.Input((T + 2, D_IN))  # the same layer built directly
    a = keras.layers.MultiHeadAttention(HEADS - 1, KEY_DIM, value_dim=2, name="mha")(
        keras.layers.Dense(D, name="q_proj")(q_in), keras.layers.Dense(12, name="kv_proj")(kv_in))
    x = keras.layers.GlobalAveragePooling1D(name="gap")(keras.layers.Dense(5, activation="relu", name="post")(a))
    fresh = keras.Model([q_in, kv_in], keras.layers.Dense(3, name="head")(x))
    assert tf_gpp.profile(slim).macs == tf_gpp.profile(fresh).macs
    # scores: L1 of the value columns and output rows; Taylor from the output rows' gradient
    vk = {w.path.split("/")[-2] + "/" + w.name: np.abs(np.asarray(w)) for w in m.get_layer("mha").weights}
    want = vk["value/kernel"].sum((0, 1)) + vk["attention_output/kernel"].sum((0, 2))
    l1 = L1Norm()
    l1.prepare(m, dep)
    np.testing.assert_allclose(l1(dep, dims), want, rtol=1e-5)
    taylor = Taylor()
    xs16, y = _inputs(m, n=16, seed=5), np.random.default_rng(6).integers(0, 3, 16)
    taylor.prepare(m, dep, (xs16, y))
    kernel, grad = _output_kernel_gradient(reloaded(m), xs16, y)
    np.testing.assert_allclose(taylor(dep, dims), (kernel * grad).sum((0, 2)) ** 2, rtol=1e-4, atol=1e-12)
