"""Channel gates: per-channel ones inserted after every producer to read gradients.

``d S / d gate_c`` equals ``sum over positions of A_c * dS/dA_c``: the first-order
contribution of channel ``c`` of activation ``A`` to a scalar ``S`` (a loss for
Taylor importance, the utility-weighted features for GPP back-tracing). One
gradient call gives it for every channel of every producer at once.

Units inside a layer (attention heads) have no tensor to gate: their handler names a
weight whose slice carries each unit linearly (:meth:`LayerHandler.unit_probe`), and
``sum over the slice of W * dS/dW`` is the same first-order term as a gate on the unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.errors import DataError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.graph.edit import ChannelMask, TensorRef
from tf_gpp.handlers import get_handler
from tf_gpp.importance.base import Importance

ChannelGate = ChannelMask
"""A gate is a trainable :class:`~tf_gpp.graph.edit.ChannelMask` left at one: a probe whose
gradient is read, never trained."""


@dataclass(frozen=True)
class UnitProbe:
    """Slice ``i`` of ``variable`` along ``axis`` carries internal unit ``i`` linearly."""

    variable: Any
    axis: int

    def first_order(self, grad: Any) -> np.ndarray:
        """``sum(W * dS/dW)`` over each unit's slice."""
        wg = np.moveaxis(np.asarray(self.variable, np.float64) * np.asarray(grad, np.float64), self.axis, 0)
        return wg.reshape(wg.shape[0], -1).sum(axis=1)


class GatedImportance(Importance):
    """A criterion whose scores are a :func:`gate_gradients` result (``self._scores``, set by
    :meth:`prepare`): a layer's channels under its name, its internal units under ``(layer, key)``."""

    _scores: dict[Any, np.ndarray]

    def channel_scores(self, layer: str) -> np.ndarray | None:
        return self._scores.get(layer)

    def unit_scores(self, dep: DependencyGraph, layer: str, key: str) -> np.ndarray | None:
        return self._scores.get((layer, key))


def gated_model(
    dep: DependencyGraph, layers: Iterable[str], feature_layer: str | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """A copy of ``dep``'s model with a gate after each of ``layers`` (first call).

    Its outputs are the model's outputs, plus the feature layer's output (after
    its gate) when ``feature_layer`` is given. Returns (model, gates): ``{layer: gate
    variable}`` and, for the internal units of those layers, ``{(layer, key): UnitProbe}``.
    """
    g = dep.graph
    edit = g.edit()
    gated: dict[str, TensorRef] = {}
    for name in dict.fromkeys(name for name in layers if name in g.ops):
        gate = ChannelGate(name=edit.free_name(f"{name}__gpp_gate"), trainable=True, dtype="float32")
        gated[name] = edit.insert_after(TensorRef(name, 0, 0), gate)
    if feature_layer is not None:
        edit.add_output(gated.get(feature_layer, TensorRef(feature_layer, 0, 0)))
    model = edit.build()
    gates: dict[Any, Any] = {name: model.get_layer(ref.layer).keep for name, ref in gated.items()}
    for name, key in dep.internal_roots:
        if name in gated:
            layer = model.get_layer(name)
            probe = get_handler(layer).unit_probe(layer, key)
            if probe is not None:
                gates[(name, key)] = UnitProbe(*probe)
    return model, gates


def gate_gradients(
    model: keras.Model,
    gates: dict[str, Any],
    objective: Callable[[Any, Any, Any], Any],
    batches: Iterable[tuple[Any, Any]],
    reduce: Callable[[np.ndarray], np.ndarray] = np.abs,
) -> dict[str | tuple[str, str], np.ndarray]:
    """Mean over batches of ``reduce(dS/dgate)`` per gated layer (and per probed unit set).

    ``objective(outputs, x, y)`` returns the scalar S of a batch.
    """
    names = list(gates)
    probes = [gates[n] if isinstance(gates[n], UnitProbe) else None for n in names]
    variables = [p.variable if p is not None else gates[n] for n, p in zip(names, probes, strict=True)]
    sums = {n: np.zeros(int(v.shape[p.axis if p is not None else 0]))
            for n, v, p in zip(names, variables, probes, strict=True)}
    count = 0
    for x, y in batches:
        with tf.GradientTape() as tape:
            outputs = model(x, training=False)
            s = objective(outputs, x, y)
        grads = tape.gradient(s, variables)
        for n, gr, p in zip(names, grads, probes, strict=True):
            if gr is not None:
                sums[n] += reduce(p.first_order(gr) if p is not None else np.asarray(gr, dtype=np.float64))
        count += 1
    if count == 0:
        raise DataError("no batches to compute importance from: the dataset is empty")
    return {n: s / count for n, s in sums.items()}
