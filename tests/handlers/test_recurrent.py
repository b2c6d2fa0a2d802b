"""SimpleRNN/GRU/LSTM hidden units and Bidirectional directions.

Reference: the original saved and reloaded by Keras, with the removed units' outgoing
weights (recurrent-kernel rows, the next layer's kernel rows) zeroed by hand in numpy.
"""

import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.testing import reloaded

T, F, U = 7, 5, 8
RNNS = {"simple_rnn": (keras.layers.SimpleRNN, 1), "gru": (keras.layers.GRU, 3), "lstm": (keras.layers.LSTM, 4)}


def _randomize(model: keras.Model, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + 0.2 * rng.standard_normal(w.shape).astype(w.dtype) for w in layer.get_weights()])


def _zero_rows(model: keras.Model, layer: str, suffix: str, rows: list[int]) -> None:
    """In place: rows ``rows`` (axis 0) of the weights of ``layer`` whose path ends with ``suffix``."""
    lay = model.get_layer(layer)
    values = lay.get_weights()
    for i, v in enumerate(lay.weights):
        if v.path.endswith(suffix):
            values[i][rows] = 0
    lay.set_weights(values)


def _x(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, T, F)).astype("float32")


def stacked(kind: str, sequences: bool) -> keras.Model:
    """rnn1 (sequences) -> rnn2 (sequences or last) -> head."""
    cls, _ = RNNS[kind]
    inp = keras.Input((T, F))
    x = cls(U, return_sequences=True, name="rnn1")(inp)
    x = cls(6, return_sequences=sequences, name="rnn2")(x)
    if sequences:
        x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(x))


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("sequences", [True, False])
def test_units_prune_exactly(kind, sequences, tmp_path):
    m = stacked(kind, sequences)
    _randomize(m)
    groups = {tuple(g.producers): g for g in tf_gpp.channel_groups(m)}
    assert groups[("rnn1",)].size == U and groups[("rnn1",)].consumers == ["rnn2"]
    assert groups[("rnn2",)].size == 6
    request = {"rnn1": [0, 3, 6], "rnn2": [2]}
    slim = tf_gpp.prune_channels(m, request)
    ref = reloaded(m)
    _zero_rows(ref, "rnn1", "recurrent_kernel", request["rnn1"])
    _zero_rows(ref, "rnn2", "/kernel", request["rnn1"])
    _zero_rows(ref, "rnn2", "recurrent_kernel", request["rnn2"])
    _zero_rows(ref, "head", "kernel", request["rnn2"])
    x = _x()
    np.testing.assert_allclose(slim(x), ref(x), rtol=1e-5, atol=1e-5)
    assert slim.get_layer("rnn1").units == U - 3 and slim.get_layer("rnn2").units == 5
    _, gates = RNNS[kind]
    before, after = tf_gpp.profile(m), tf_gpp.profile(slim)
    want = T * gates * ((F * U + U * U) - (F * 5 + 5 * 5)) + T * gates * ((U * 6 + 36) - (5 * 5 + 25))
    assert before.macs - after.macs == want + 3 * len(request["rnn2"])  # and the head's rows
    slim.save(tmp_path / "slim.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "slim.keras")(x), slim(x), atol=1e-6)


def test_lstm_returned_states_are_the_units():
    inp = keras.Input((T, F))
    seq, h, c = keras.layers.LSTM(U, return_sequences=True, return_state=True, name="lstm")(inp)
    y = keras.layers.Concatenate(name="cat")([keras.layers.GlobalAveragePooling1D(name="gap")(seq), h, c])
    m = keras.Model(inp, keras.layers.Dense(2, name="head")(y))
    _randomize(m)
    (g,) = [g for g in tf_gpp.channel_groups(m) if g.producers == ["lstm"]]
    assert g.size == U
    removed = [1, 5]
    slim = tf_gpp.prune_channels(m, {"lstm": removed})
    ref = reloaded(m)
    _zero_rows(ref, "lstm", "recurrent_kernel", removed)
    # the head reads [mean of seq | h | c]: the removed units' rows in all three blocks
    _zero_rows(ref, "head", "kernel", [r + k * U for k in range(3) for r in removed])
    x = _x()
    # c of a removed unit still feeds nothing else: zeroing its head rows is the whole effect
    np.testing.assert_allclose(slim(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["concat", "sum", None])
def test_bidirectional_directions(mode, tmp_path):
    inp = keras.Input((T, F))
    bi = keras.layers.Bidirectional(
        keras.layers.GRU(U, return_sequences=True), merge_mode=mode, name="bi")
    out = bi(inp)
    if mode is None:
        out = keras.layers.Concatenate(name="cat")(out)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(out)
    m = keras.Model(inp, keras.layers.Dense(3, name="head")(x))
    _randomize(m)
    (group,) = [g for g in tf_gpp.channel_groups(m) if "bi" in g.producers]
    # Keras sizes both directions from the forward layer: unit i of each goes together.
    assert group.size == U
    fwd = bwd = [2, 5]
    if mode == "sum":
        head_rows, request = [2, 5], {"bi": [2, 5]}
    else:  # concatenated: the backward unit i sits at U + i
        head_rows = [2, 5, U + 2, U + 5]
        request = {"bi": [2, U + 5]} if mode == "concat" else {"cat": [U + 2, 5]}
    slim = tf_gpp.prune_channels(m, request)
    ref = reloaded(m)
    for direction, rows in ((ref.get_layer("bi").forward_layer, fwd), (ref.get_layer("bi").backward_layer, bwd)):
        values = direction.get_weights()
        for i, v in enumerate(direction.weights):
            if v.name == "recurrent_kernel":
                values[i][rows] = 0
        direction.set_weights(values)
    _zero_rows(ref, "head", "kernel", head_rows)
    x = _x()
    np.testing.assert_allclose(slim(x), ref(x), rtol=1e-5, atol=1e-5)
    layer = slim.get_layer("bi")
    assert layer.forward_layer.units == U - len(fwd) and layer.backward_layer.units == U - len(bwd)
    kept_f, kept_b = U - len(fwd), U - len(bwd)
    saved = T * 3 * ((F * U + U * U) * 2 - (F * kept_f + kept_f**2) - (F * kept_b + kept_b**2))
    assert tf_gpp.profile(m).macs - tf_gpp.profile(slim).macs == saved + 3 * len(head_rows)
    slim.save(tmp_path / "slim.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "slim.keras")(x), slim(x), atol=1e-6)


def test_stateful_and_generic_rnn_stay_frozen():
    inp = keras.Input((T, F), batch_size=2)
    x = keras.layers.LSTM(U, stateful=True, return_sequences=True, name="stateful")(inp)
    x = keras.layers.RNN(keras.layers.GRUCell(4), name="generic")(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="head")(x))
    assert not any({"stateful", "generic"} & set(g.producers) for g in tf_gpp.channel_groups(m))
    with pytest.raises(tf_gpp.PruningRequestError, match="stateful"):
        tf_gpp.prune_channels(m, {"stateful": [0]})
    assert tf_gpp.profile(m).macs > 0


def test_l1_scores_units_from_their_gate_columns():
    from tf_gpp.graph.dependency import DependencyGraph
    from tf_gpp.importance import L1Norm

    inp = keras.Input((T, F))
    x = keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True), name="bi")(inp)
    x = keras.layers.GRU(6, name="gru")(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="head")(x))
    _randomize(m)
    dep = DependencyGraph(m)
    l1 = L1Norm()
    l1.prepare(m, dep)
    by_producer = {tuple(g.producers): l1(dep, g) for g in dep.groups}

    def by_hand(layer, gates):  # |kernel| + |recurrent_kernel| of each unit's gate columns
        k, r = (np.abs(w) for w in layer.get_weights()[:2])
        units = r.shape[0]
        return sum(w[:, g * units:(g + 1) * units].sum(axis=0) for w in (k, r) for g in range(gates))

    bi = m.get_layer("bi")
    np.testing.assert_allclose(by_producer[("bi",)], by_hand(bi.forward_layer, 4) + by_hand(bi.backward_layer, 4),
                               rtol=1e-5)
    np.testing.assert_allclose(by_producer[("gru",)], by_hand(m.get_layer("gru"), 3), rtol=1e-5)
