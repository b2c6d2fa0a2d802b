"""Channel gates: per-channel ones inserted after every producer to read gradients.

``d S / d gate_c`` equals ``sum over positions of A_c * dS/dA_c``: the first-order
contribution of channel ``c`` of activation ``A`` to a scalar ``S`` (a loss for
Taylor importance, the utility-weighted features for GPP back-tracing). One
gradient call gives it for every channel of every producer at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.surgery import model_from_config, transfer_state


@keras.saving.register_keras_serializable(package="tf_gpp")
class ChannelGate(keras.layers.Layer):
    """``x * g`` with ``g`` a per-channel vector of ones (a probe, not trained)."""

    def build(self, input_shape: tuple) -> None:
        self.gate = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gate", trainable=True)

    def call(self, x: Any) -> Any:
        return x * self.gate


def _replace_refs(obj: Any, old: str, new: str) -> None:
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            h = obj["config"]["keras_history"]
            if h[0] == old and h[1] == 0:
                obj["config"]["keras_history"] = [new, 0, h[2]]
            return
        for v in obj.values():
            _replace_refs(v, old, new)
    elif isinstance(obj, list | tuple):
        if isinstance(obj, list) and len(obj) == 3 and obj[0] == old and obj[1] == 0 and isinstance(obj[2], int):
            obj[0] = new
            return
        for v in obj:
            _replace_refs(v, old, new)


def gated_model(
    dep: DependencyGraph, layers: Iterable[str], feature_layer: str | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """A copy of ``dep``'s model with a gate after each of ``layers`` (first call).

    Its outputs are the model's outputs, plus the feature layer's output (after
    its gate) when ``feature_layer`` is given. Returns (model, {layer: gate variable}).
    """
    g = dep.graph
    config = copy.deepcopy(g.config)
    layers = [name for name in layers if name in g.ops]
    gate_names = {name: f"{name}__gpp_gate" for name in layers}
    entries = []
    for entry in config["layers"]:
        name = entry["name"]
        for old, new in gate_names.items():
            if old != name:
                _replace_refs(entry.get("inbound_nodes", []), old, new)
        entries.append(entry)
        if name in gate_names:
            shape = list(g.shapes[next(r for r in g.nodes_of(name)[0].outputs)])
            entries.append(
                {
                    "module": ChannelGate.__module__,
                    "class_name": "ChannelGate",
                    "registered_name": "tf_gpp>ChannelGate",
                    "config": {"name": gate_names[name], "trainable": True, "dtype": "float32"},
                    "name": gate_names[name],
                    "inbound_nodes": [
                        {
                            "args": [
                                {
                                    "class_name": "__keras_tensor__",
                                    "config": {"shape": shape, "dtype": "float32", "keras_history": [name, 0, 0]},
                                }
                            ],
                            "kwargs": {},
                        }
                    ],
                }
            )
    config["layers"] = entries
    outputs = config["output_layers"]
    for old, new in gate_names.items():
        _replace_refs(outputs, old, new)
    if feature_layer is not None:
        ref = [gate_names.get(feature_layer, feature_layer), 0, 0]
        outputs = [outputs, ref] if not isinstance(outputs, list) or not isinstance(outputs[0], list) else [*outputs, ref]
        config["output_layers"] = outputs
    ops = list(g.ops.values())
    model = model_from_config(config, ops)
    transfer_state(g, model, {})
    gates = {name: model.get_layer(gate).gate for name, gate in gate_names.items()}
    return model, gates


def gate_gradients(
    model: keras.Model,
    gates: dict[str, Any],
    objective: Callable[[Any, Any, Any], Any],
    batches: Iterable[tuple[Any, Any]],
    reduce: Callable[[np.ndarray], np.ndarray] = np.abs,
) -> dict[str, np.ndarray]:
    """Mean over batches of ``reduce(dS/dgate)`` per gated layer.

    ``objective(outputs, x, y)`` returns the scalar S of a batch.
    """
    names = list(gates)
    variables = [gates[n] for n in names]
    sums = {n: np.zeros(int(v.shape[0])) for n, v in zip(names, variables, strict=True)}
    count = 0
    for x, y in batches:
        with tf.GradientTape() as tape:
            outputs = model(x, training=False)
            s = objective(outputs, x, y)
        grads = tape.gradient(s, variables)
        for n, gr in zip(names, grads, strict=True):
            if gr is not None:
                sums[n] += reduce(np.asarray(gr, dtype=np.float64))
        count += 1
    if count == 0:
        from tf_gpp.errors import DataError

        raise DataError("no batches to compute importance from: the dataset is empty")
    return {n: s / count for n, s in sums.items()}
