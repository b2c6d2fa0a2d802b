"""Recurrent layers (hidden units pruned) and the pricing of recurrent layers and attention.

``SimpleRNN``/``GRU``/``LSTM`` hidden units are channels: a unit is one column of each
of the 1/3/4 gate blocks of the kernel, recurrent kernel and bias, one row of the
recurrent kernel, and one channel of the output (and of every returned state). A
unit whose outgoing weights (its recurrent-kernel row and the next layer's rows) are
zero has no effect on the others, so removing it is exact. ``Bidirectional`` prunes
unit i of both directions together (Keras sizes both directions from the forward
layer). ``RNN(cell)``, stateful layers and ``Bidirectional(...,
return_state=True)`` stay frozen.

Costs, per sample (matrix products only; element-wise gate arithmetic, biases and
softmax are not counted, as for the other layers):

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
import numpy as np

from tf_gpp.handlers.common import is_elementwise
from tf_gpp.handlers.registry import (
    Keep,
    LayerHandler,
    NodeContext,
    OpaqueHandler,
    Shape,
    WeightMasks,
    prod,
    register_handler,
)

_GATES = {
    keras.layers.SimpleRNNCell: 1,
    keras.layers.GRUCell: 3,
    keras.layers.LSTMCell: 4,
}


def rnn_macs(layer: Any, in_shape: Shape, units: int | None = None) -> int | None:
    """MACs of one recurrent layer (or ``RNN`` wrapper) over an input of ``in_shape``
    (batch, timesteps, features) with ``units`` (default: the layer's own); ``None`` if its
    cell type is not one tf_gpp prices."""
    cell = getattr(layer, "cell", None)
    gates = _GATES.get(type(cell))
    if gates is None:
        return None
    units = int(cell.units if units is None else units)
    steps, features = prod(in_shape[1:-1]), prod(in_shape[-1:])
    return steps * gates * (features * units + units * units)


# Layers whose hidden units tf_gpp prunes: the gate blocks of kernel, recurrent kernel and bias.
_UNIT_LAYERS = {keras.layers.SimpleRNN: 1, keras.layers.GRU: 3, keras.layers.LSTM: 4}


def _unit_freeze_reason(config: dict) -> str | None:
    """Why a recurrent layer's units stay frozen (None: they are prunable)."""
    if config.get("stateful"):
        return "is stateful (its state variables are not sliced)"
    for key in ("activation", "recurrent_activation"):
        if key in config and not is_elementwise(config.get(key)):
            return f"has a {key} that mixes units"
    return None


def recurrent_masks(layer: Any, in_mask: np.ndarray, unit_mask: np.ndarray, by_path: bool = False) -> WeightMasks:
    """Keep masks of a SimpleRNN/GRU/LSTM: kernel rows by input channel, recurrent-kernel rows by
    unit, and the columns of every gate block (and the bias) by unit."""
    gate_mask = np.tile(unit_mask, _UNIT_LAYERS[type(layer)])
    by_name = {
        "kernel": {0: in_mask, 1: gate_mask},
        "recurrent_kernel": {0: unit_mask, 1: gate_mask},
        "bias": {-1: gate_mask},
    }
    if not by_path:
        return by_name
    return {v.path: by_name[v.name] for v in layer.weights if v.name in by_name}


def unit_l1(layer: Any) -> np.ndarray:
    """Sum of |kernel| and |recurrent kernel| entries of each unit's gate columns."""
    gates, units = _UNIT_LAYERS[type(layer)], int(layer.units)
    total = np.zeros(units)
    for v in layer.weights:
        if v.name in ("kernel", "recurrent_kernel"):
            total += np.abs(np.asarray(v)).reshape(-1, gates, units).sum(axis=(0, 1))
    return total


class RecurrentHandler(LayerHandler):
    """SimpleRNN, GRU, LSTM: ``units`` new channels (their outputs and states), input channels
    read by the kernel rows. ``RNN(cell)`` stays opaque (priced only)."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if type(ctx.layer) not in _UNIT_LAYERS:
            return ctx.freeze_all(ctx.reason("is a generic recurrent layer (its cell mixes channels)"))
        units = int(ctx.config["units"])
        if any(s and s[-1] != units for s in ctx.out_shapes):
            return ctx.freeze_all(ctx.reason("has outputs of unexpected widths"))
        reason = _unit_freeze_reason(ctx.config)
        atoms = ctx.new_atoms(units, frozen=ctx.reason(reason) if reason else None)
        return [atoms for _ in ctx.out_shapes]  # the output and every returned state: the units

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        config["units"] = int(keep.outputs[0].sum())
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        return recurrent_masks(layer, keep.inputs[0], keep.outputs[0])

    def filter_l1(self, layer: Any) -> np.ndarray | None:
        return unit_l1(layer) if type(layer) in _UNIT_LAYERS else None

    def macs(self, layer, config, in_shapes, out_shapes) -> int | None:
        return rnn_macs(layer, in_shapes[0], config.get("units"))


class GenericRecurrentHandler(OpaqueHandler):
    """``RNN(cell)``: frozen (a cell may mix channels any way), priced when its cell is known."""

    def __init__(self) -> None:
        super().__init__("is a generic recurrent layer (its cell mixes channels)")

    def macs(self, layer, config, in_shapes, out_shapes) -> int | None:
        return rnn_macs(layer, in_shapes[0])


def _direction_masks(layer: Any, keep: Keep) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) unit keep masks of a Bidirectional call."""
    uf = int(layer.forward_layer.units)
    if layer.merge_mode == "concat":
        return keep.outputs[0][:uf], keep.outputs[0][uf:]
    if layer.merge_mode is None:
        return keep.outputs[0], keep.outputs[1]
    return keep.outputs[0], keep.outputs[0]


class BidirectionalHandler(LayerHandler):
    """Bidirectional SimpleRNN/GRU/LSTM: forward unit i and backward unit i are one unit (Keras
    gives both directions the forward layer's width), at offsets ``i`` and ``units + i`` of a
    concatenated output; both directions read the same input channels."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        layer = ctx.layer
        fwd, bwd = layer.forward_layer, layer.backward_layer
        if type(fwd) not in _UNIT_LAYERS or type(bwd) not in _UNIT_LAYERS:
            return ctx.freeze_all(ctx.reason("wraps a recurrent layer whose units tf_gpp does not prune"))
        if layer.return_state:
            return ctx.freeze_all(ctx.reason("returns its states"))
        reason = _unit_freeze_reason(fwd.get_config()) or _unit_freeze_reason(bwd.get_config())
        frozen = ctx.reason(reason) if reason else None
        a = ctx.new_atoms(int(fwd.units), frozen=frozen)
        b = ctx.new_atoms(int(bwd.units), frozen=frozen)
        # Keras infers a Bidirectional's output width from the forward layer alone: both
        # directions must keep as many units, so unit i of each is pruned together.
        if len(a) != len(b):
            return ctx.freeze_all(ctx.reason("has directions of different widths"))
        ctx.unify(a, b)
        mode = layer.merge_mode
        if mode == "concat":
            return [np.concatenate([a, b])]
        if mode is None:
            return [a, b]
        return [a]

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        kf, kb = (int(m.sum()) for m in _direction_masks(layer, keep))
        config["layer"]["config"]["units"] = kf
        if isinstance(config.get("backward_layer"), dict):
            config["backward_layer"]["config"]["units"] = kb
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        mf, mb = _direction_masks(layer, keep)
        masks = recurrent_masks(layer.forward_layer, keep.inputs[0], mf, by_path=True)
        masks.update(recurrent_masks(layer.backward_layer, keep.inputs[0], mb, by_path=True))
        return masks

    def filter_l1(self, layer: Any) -> np.ndarray | None:
        if {type(layer.forward_layer), type(layer.backward_layer)} - set(_UNIT_LAYERS):
            return None
        f, b = unit_l1(layer.forward_layer), unit_l1(layer.backward_layer)
        if layer.merge_mode == "concat":
            return np.concatenate([f, b])
        return f if layer.merge_mode is None else f + b

    def macs(self, layer, config, in_shapes, out_shapes) -> int | None:
        units = [config["layer"]["config"].get("units"),
                 (config.get("backward_layer") or config["layer"])["config"].get("units")]
        parts = [rnn_macs(sub, in_shapes[0], u)
                 for sub, u in zip((layer.forward_layer, layer.backward_layer), units, strict=True)]
        return None if None in parts else sum(parts)


def attention_macs(
    query: Shape, key: Shape, value: Shape, output: Shape, heads: int, key_dim: int, value_dim: int
) -> int:
    """MACs of one ``MultiHeadAttention`` call from its input/output shapes and head sizes."""
    t, s = prod(query[1:-1]), prod(value[1:-1])
    dq, dk, dv, do = (prod(x[-1:]) for x in (query, key, value, output))
    projections = t * dq * heads * key_dim + s * dk * heads * key_dim + s * dv * heads * value_dim
    return projections + t * heads * value_dim * do + t * s * heads * (key_dim + value_dim)


register_handler(keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)(RecurrentHandler())
register_handler(keras.layers.RNN)(GenericRecurrentHandler())
register_handler(keras.layers.Bidirectional)(BidirectionalHandler())
