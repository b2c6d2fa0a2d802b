"""The engine's correctness rule as a reusable check.

If the removed channels have no effect on the kept ones (every weight slice
the surgery drops set to zero), the rebuilt model's outputs must equal the
original's, to float32 tolerance. Used by the tests and the coverage benchmark.

The reference is independent of the rebuild path under test: the original
model saved to ``.keras`` and reloaded by Keras, then the removed weight slices
zeroed in place. State outside the weights (adapted ``Normalization``,
vocabularies) therefore comes from Keras' own saving, never from tf_gpp's copy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.graph.edit import custom_objects
from tf_gpp.graph.flatten import flat_layers, is_graph_model
from tf_gpp.handlers.registry import masks_for
from tf_gpp.surgery import layer_weight_masks, rebuild


def random_request(
    dep: DependencyGraph, fraction: float, seed: int = 0, groups: Iterable[int] | None = None
) -> dict[int, list[int]]:
    """``{group index: unit indices}`` removing ``fraction`` of each group (at least one kept)."""
    rng = np.random.default_rng(seed)
    plan: dict[int, list[int]] = {}
    for gi in groups if groups is not None else range(len(dep.groups)):
        size = dep.groups[gi].size
        n = min(int(round(size * fraction)), size - 1)
        if n > 0:
            plan[gi] = sorted(rng.choice(size, n, replace=False).tolist())
    return plan


def sample_inputs(model: keras.Model, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Random inputs matching the model's input shapes (integers for int inputs)."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape = (batch, *[d if d is not None else 8 for d in t.shape[1:]])
        if "int" in str(t.dtype):
            xs.append(rng.integers(0, 4, size=shape).astype(str(t.dtype)))
        else:
            xs.append(rng.standard_normal(shape).astype("float32"))
    return xs


def _all_layers(model: keras.Model) -> list[Any]:
    return list(flat_layers(model).values()) if is_graph_model(model) else list(model.layers)


def reloaded(model: keras.Model) -> keras.Model:
    """``model`` saved to a ``.keras`` file and loaded back by Keras (an independent copy)."""
    layers = [op for op in _all_layers(model) if op is not None]
    with tempfile.TemporaryDirectory(prefix="tf_gpp_ref_") as d:
        path = os.path.join(d, "reference.keras")
        model.save(path)
        return keras.saving.load_model(
            path, custom_objects=custom_objects(layers), compile=False, safe_mode=False
        )


def zeroed_reference(model: keras.Model, dep: DependencyGraph, removed: set[int]) -> keras.Model:
    """The original ``model`` saved and reloaded, with every weight slice that the
    surgery drops for ``removed`` set to zero (by the handlers' weight masks)."""
    ref = reloaded(model)
    layers = {name: op for name, op in flat_layers(ref).items() if op is not None}
    removed_arr = np.fromiter(removed, dtype=np.int64, count=len(removed))
    for name, (op, masks, _) in layer_weight_masks(dep, removed_arr).items():
        if not getattr(op, "weights", None):
            continue
        target = layers[name]
        values = target.get_weights()
        for i, w in enumerate(op.weights):
            for axis, keep in masks_for(masks, w).items():
                index = [slice(None)] * values[i].ndim
                index[axis % values[i].ndim] = ~keep
                values[i][tuple(index)] = 0
        target.set_weights(values)
    return ref


def equivalence_error(
    model: keras.Model,
    plan: dict[int, list[int]] | dict[str, list[int]],
    inputs: list[np.ndarray] | None = None,
    dep: DependencyGraph | None = None,
) -> tuple[float, keras.Model]:
    """Prune ``plan`` and return (max |slim - zeroed| / max |zeroed| over outputs, slim model).

    ``plan`` is ``{group index: unit indices}`` or a request ``{layer name: channels}``.
    The reference is :func:`zeroed_reference` (Keras' save/load, not the rebuild path).
    """
    dep = dep or DependencyGraph(model)
    if all(isinstance(k, str) for k in plan):
        removed = dep.resolve(plan)
    else:
        removed = dep.removed_units(plan)
    slim = rebuild(dep, removed)
    zeroed = zeroed_reference(model, dep, removed)
    inputs = inputs if inputs is not None else sample_inputs(model)
    a = keras.tree.flatten(zeroed(inputs if len(inputs) > 1 else inputs[0], training=False))
    b = keras.tree.flatten(slim(inputs if len(inputs) > 1 else inputs[0], training=False))
    err = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise AssertionError(f"output shapes differ: {x.shape} vs {y.shape}")
        scale = max(float(np.abs(x).max()), 1e-30)
        err = max(err, float(np.abs(x - y).max()) / scale)
    return err, slim


def assert_equivalent(
    model: keras.Model,
    plan: dict[int, list[int]] | dict[str, list[int]],
    inputs: list[np.ndarray] | None = None,
    rtol: float = 1e-5,
) -> keras.Model:
    """Assert the correctness rule for ``plan`` and return the slim model."""
    err, slim = equivalence_error(model, plan, inputs)
    if not err <= rtol:
        raise AssertionError(f"slim model differs from the zeroed original: relative error {err:.3g} > {rtol}")
    return slim
