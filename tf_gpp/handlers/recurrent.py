"""Pricing of recurrent layers and multi-head attention (the handlers use these formulas).

Their channels are frozen (the opaque treatment: gates and heads mix channels), but
their cost is counted, per sample, with these formulas (matrix products only;
element-wise gate arithmetic, biases and softmax are not counted, as for the other
layers):

* ``SimpleRNN``/``GRU``/``LSTM`` over ``T`` timesteps with ``F`` input features and
  ``U`` units: ``T * g * (F * U + U * U)`` with ``g`` = 1, 3, 4 gates. A
  ``keras.layers.RNN`` wrapping one of those cells is priced the same way.
* ``Bidirectional``: the forward plus the backward layer (twice the layer when both
  directions are the same layer type).
* ``MultiHeadAttention`` with ``T`` query and ``S`` key/value positions: the query,
  key, value and output projections (``T*|Wq| + S*|Wk| + S*|Wv| + T*|Wo|``, ``|W|``
  the number of kernel entries) plus ``Q K^T`` and the weighted sum of values,
  ``T * S * H * (key_dim + value_dim)``.
"""

from __future__ import annotations

from typing import Any

import keras

from tf_gpp.handlers.registry import OpaqueHandler, Shape, prod, register_handler

_GATES = {
    keras.layers.SimpleRNNCell: 1,
    keras.layers.GRUCell: 3,
    keras.layers.LSTMCell: 4,
}


def rnn_macs(layer: Any, in_shape: Shape) -> int | None:
    """MACs of one recurrent layer (or ``RNN`` wrapper) over an input of ``in_shape``
    (batch, timesteps, features); ``None`` if its cell type is not one tf_gpp prices."""
    cell = getattr(layer, "cell", None)
    gates = _GATES.get(type(cell))
    if gates is None:
        return None
    units = int(cell.units)
    steps, features = prod(in_shape[1:-1]), prod(in_shape[-1:])
    return steps * gates * (features * units + units * units)


class RecurrentHandler(OpaqueHandler):
    """SimpleRNN, GRU, LSTM and ``RNN(cell)``: frozen channels, priced per timestep."""

    def __init__(self) -> None:
        super().__init__("is a recurrent layer (its gates mix channels)")

    def macs(self, layer, config, in_shapes, out_shapes) -> int | None:
        return rnn_macs(layer, in_shapes[0])


class BidirectionalHandler(OpaqueHandler):
    """Bidirectional: the forward and the backward layer, each over the whole sequence."""

    def __init__(self) -> None:
        super().__init__("is a bidirectional recurrent layer (its gates mix channels)")

    def macs(self, layer, config, in_shapes, out_shapes) -> int | None:
        parts = [rnn_macs(sub, in_shapes[0]) for sub in (layer.forward_layer, layer.backward_layer)]
        return None if None in parts else sum(parts)


def attention_macs(
    query: Shape, key: Shape, value: Shape, output: Shape, heads: int, key_dim: int, value_dim: int
) -> int:
    """MACs of one ``MultiHeadAttention`` call from its input/output shapes and head sizes."""
    t, s = prod(query[1:-1]), prod(value[1:-1])
    dq, dk, dv, do = (prod(x[-1:]) for x in (query, key, value, output))
    projections = t * dq * heads * key_dim + s * dk * heads * key_dim + s * dv * heads * value_dim
    return projections + t * heads * value_dim * do + t * s * heads * (key_dim + value_dim)


register_handler(keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM, keras.layers.RNN)(RecurrentHandler())
register_handler(keras.layers.Bidirectional)(BidirectionalHandler())
