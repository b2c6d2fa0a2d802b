"""Warm start: copy trained weights from a network into its grown version.

Layers are matched by name. Every tensor of the new model carries a *channel
map*: for each of its channels, the index of the same channel in the old
model's tensor of the same name, or -1 for a channel that did not exist. The
maps follow the graph (identity through BN/ReLU/pooling, offsets through
Concatenate), so a widened module's channels land at the right positions in
every consumer, including after concatenations. Then, per weighted layer:

* old input x old output weights are copied;
* weights from *new* input channels into *old* outputs are set to zero, so a
  widened network computes exactly what the old one did (until trained);
* weights of new output channels keep the new model's initialisation;
* BatchNormalization copies gamma/beta/moving statistics of old channels
  (new channels keep gamma=1, beta=0, mean=0, var=1).

A layer whose inputs changed completely (e.g. the head after a module was
appended) is copied as is when its weight shapes are unchanged, and otherwise
left freshly initialised.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_gpp.errors import UnsupportedModelError
from tf_gpp.graph.model_graph import ModelGraph

_IDENTITY_TYPES = (
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Dropout,
)


def inbound_layers(model: keras.Model) -> dict[str, list[str]]:
    """Layer name -> names of the layers feeding it, in call order."""
    graph = ModelGraph(model)
    result: dict[str, list[str]] = {}
    for name in graph.layer_configs:
        nodes = graph.nodes_of(name)
        if len(nodes) > 1:
            raise UnsupportedModelError(
                f"Layer {name!r} is shared (called {len(nodes)} times); warm start supports layers called once."
            )
        result[name] = [ref.layer for node in nodes for ref in node.inputs]
    return result


def _channels(layer: keras.layers.Layer) -> int:
    return int(layer.output.shape[-1])


def _copy_matrix(new: np.ndarray, old: np.ndarray, in_map: np.ndarray | None, out_map: np.ndarray) -> None:
    """Copy a kernel (..., in, out) or vector (out,) along channel maps (in place)."""
    cols_new = np.flatnonzero(out_map >= 0)
    cols_old = out_map[cols_new]
    if in_map is None:
        new[..., cols_new] = old[..., cols_old]
        return
    rows_new = np.flatnonzero(in_map >= 0)
    rows_old = in_map[rows_new]
    new[(Ellipsis, *np.ix_(rows_new, cols_new))] = old[(Ellipsis, *np.ix_(rows_old, cols_old))]
    fresh_rows = np.flatnonzero(in_map < 0)
    new[(Ellipsis, *np.ix_(fresh_rows, cols_new))] = 0.0


def transfer_weights(source: keras.Model, target: keras.Model) -> dict[str, str]:
    """Copy ``source``'s trained weights into the grown ``target`` (in place).

    Returns:
        layer name -> ``"copied"`` (all weights), ``"partial"`` (old channels
        copied into a wider layer), ``"new"`` (left initialised), for every
        weighted layer of ``target``.

    Raises:
        UnsupportedModelError: a layer shrank, changed type, or is of a kind
            whose channel layout this function does not know.
    """
    src_layers = {layer.name: layer for layer in source.layers}
    src_inbound = inbound_layers(source)
    tgt_inbound = inbound_layers(target)
    maps: dict[str, np.ndarray] = {}
    report: dict[str, str] = {}

    for layer in target.layers:
        name = layer.name
        inputs = tgt_inbound.get(name, [])
        old = src_layers.get(name)
        same_inputs = old is not None and src_inbound.get(name, []) == inputs
        if old is not None and type(old) is not type(layer):
            raise UnsupportedModelError(
                f"Layer {name!r} is a {type(old).__name__} in the source model but a "
                f"{type(layer).__name__} in the target; warm start matches layers by name."
            )
        n_out = _channels(layer)

        if not inputs:  # model input
            maps[name] = np.arange(n_out) if old is not None else np.full(n_out, -1)
            continue
        in_map = maps[inputs[0]] if same_inputs else np.full(_channels_of(target, inputs[0]), -1)

        if isinstance(layer, keras.layers.Concatenate):
            if same_inputs and layer.axis in (-1, len(layer.output.shape) - 1):
                parts, offset = [], 0
                for src_name in inputs:
                    part = maps[src_name]
                    parts.append(np.where(part >= 0, part + offset, -1))
                    offset += _channels(src_layers[src_name])
                maps[name] = np.concatenate(parts)
            else:
                maps[name] = np.full(n_out, -1)
            continue

        weights = layer.get_weights()
        if not weights:
            if isinstance(layer, _IDENTITY_TYPES) or n_out == len(in_map):
                maps[name] = in_map if len(in_map) == n_out else np.full(n_out, -1)
            else:
                maps[name] = np.full(n_out, -1)
            continue

        if old is None:
            maps[name] = np.full(n_out, -1)
            report[name] = "new"
            continue
        old_weights = old.get_weights()
        old_out = _channels(old)
        if n_out < old_out:
            raise UnsupportedModelError(
                f"Layer {name!r} has {n_out} output channels, fewer than the source's {old_out}; "
                "warm start only grows layers (use tf_gpp.prune_channels to shrink)."
            )

        if isinstance(layer, keras.layers.BatchNormalization):
            out_map = in_map
            new_weights = [w.copy() for w in weights]
            for nw, ow in zip(new_weights, old_weights, strict=True):
                _copy_matrix(nw, ow, None, out_map)
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            out_map = np.concatenate([np.arange(old_out), np.full(n_out - old_out, -1)])
            if not np.any(in_map >= 0):
                if all(w.shape == o.shape for w, o in zip(weights, old_weights, strict=True)):
                    layer.set_weights(old_weights)
                    maps[name] = np.full(n_out, -1)
                    report[name] = "copied"
                else:
                    maps[name] = np.full(n_out, -1)
                    report[name] = "new"
                continue
            new_weights = [w.copy() for w in weights]
            _copy_matrix(new_weights[0], old_weights[0], in_map, out_map)
            for nw, ow in zip(new_weights[1:], old_weights[1:], strict=True):
                _copy_matrix(nw, ow, None, out_map)
        else:
            if all(w.shape == o.shape for w, o in zip(weights, old_weights, strict=True)) and (
                len(in_map) == n_out and np.array_equal(in_map, np.arange(n_out))
            ):
                layer.set_weights(old_weights)
                maps[name] = in_map
                report[name] = "copied"
                continue
            raise UnsupportedModelError(
                f"Layer {name!r} ({type(layer).__name__}) changed shape and warm start does not "
                "know its channel layout; only Conv2D, Dense and BatchNormalization may grow."
            )

        layer.set_weights(new_weights)
        maps[name] = out_map
        unchanged = all(w.shape == o.shape for w, o in zip(weights, old_weights, strict=True))
        report[name] = "copied" if unchanged and np.all(in_map >= 0) else "partial"
    return report


def _channels_of(model: keras.Model, layer_name: str) -> int:
    return _channels(model.get_layer(layer_name))
