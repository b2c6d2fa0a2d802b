"""Apply a pruning plan: new layer configs + sliced weights -> a new functional model.

The user's model is never modified: the slim model is rebuilt from the
(edited) functional config and receives sliced copies of the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np

from tf_gpp.errors import UnsupportedModelError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.graph.edit import WeightEdit
from tf_gpp.handlers.registry import WeightMasks, masks_for


def prune_channels(
    model: keras.Model | DependencyGraph,
    request: dict[str, Iterable[int]],
) -> keras.Model:
    """Remove output channels of layers, with every channel coupled to them.

    Args:
        model: a functional or Sequential Keras model (or its
            :class:`~tf_gpp.graph.DependencyGraph`, to reuse an analysis).
        request: ``{layer_name: [output channel indices]}``. Each channel is
            expanded to its whole coupled unit (the BatchNorm after a conv, the
            other branches of an ``Add``, the rows of the next Dense...).

    Returns:
        A new functional ``keras.Model`` with the same layer names, fewer
        channels, and the remaining weights copied. It is not compiled unless
        the original was (then it gets the same compile config). Nested
        sub-models are inlined first (:func:`tf_gpp.flatten_model`): the result is
        flat, and layer names are those of the flat model. State outside the
        weights (adapted ``Normalization``, lookup vocabularies) is kept.

    Raises:
        PruningRequestError: unknown layer, index out of range, channels that
            reach a model output or a frozen layer, or a group emptied.
    """
    dep = model if isinstance(model, DependencyGraph) else DependencyGraph(model)
    removed = dep.resolve(request)
    return rebuild(dep, removed)


def slice_weight(w: np.ndarray, masks: dict[int, np.ndarray], what: str) -> np.ndarray:
    for axis, mask in masks.items():
        ax = axis % w.ndim
        if w.shape[ax] != len(mask):
            raise UnsupportedModelError(
                f"{what}: axis {ax} has size {w.shape[ax]} but {len(mask)} channels were traced"
            )
        w = np.compress(mask, w, axis=ax)
    return w


def layer_weight_masks(dep: DependencyGraph, removed: np.ndarray) -> dict[str, tuple[Any, WeightMasks, dict]]:
    """For every layer touched by ``removed``: (layer, weight masks, new config)
    (:meth:`DependencyGraph.layer_edits`)."""
    return dep.layer_edits(removed)


def _edited_weights(changes: dict, edit: Callable[[np.ndarray, dict[int, np.ndarray], str], np.ndarray]) -> WeightEdit:
    """The weights of the layers in ``changes``, each masked weight passed through
    ``edit(value, axis masks, what)``; other layers keep theirs (None)."""

    def weights(name: str, op: Any) -> list[np.ndarray] | None:
        if name not in changes or not getattr(op, "weights", None):
            return None
        masks = changes[name][1]
        return [
            edit(v, masks_for(masks, var), f"layer '{name}' weight '{var.name.split('/')[-1]}'")
            if masks_for(masks, var) else v
            for var, v in zip(op.weights, op.get_weights(), strict=True)
        ]

    return weights


def rebuild(dep: DependencyGraph, removed: set[int] | np.ndarray) -> keras.Model:
    """Rebuild ``dep``'s model without the units in ``removed``."""
    removed_arr = np.fromiter(removed, dtype=np.int64, count=len(removed))
    changes = layer_weight_masks(dep, removed_arr)
    edit = dep.graph.edit()
    for name, (_, _, config) in changes.items():
        edit.reconfigure(name, config)
    new = edit.build(_edited_weights(changes, slice_weight))
    _recompile(dep.graph.source, new)
    return new


def _recompile(source: keras.Model, new: keras.Model) -> None:
    if not getattr(source, "compiled", False):
        return
    try:
        cfg = source.get_compile_config()
        if cfg:
            new.compile_from_config(cfg)
    except Exception:  # noqa: BLE001 - compiling is a convenience, the model is complete
        pass


def _zero_removed(w: np.ndarray, masks: dict[int, np.ndarray], what: str) -> np.ndarray:
    w = w.copy()
    for axis, mask in masks.items():
        index = [slice(None)] * w.ndim
        index[axis % w.ndim] = ~mask
        w[tuple(index)] = 0
    return w


def zero_pruned_weights(dep: DependencyGraph, removed: set[int]) -> keras.Model:
    """A copy of the model where every weight slice that ``rebuild`` would drop is zero.

    The removed channels then have no effect on the kept ones, so this model's
    outputs must equal the rebuilt model's: the correctness rule of the engine.
    """
    removed_arr = np.fromiter(removed, dtype=np.int64, count=len(removed))
    return dep.graph.edit().build(_edited_weights(layer_weight_masks(dep, removed_arr), _zero_removed))


def frozen_pruned_layers(
    model: keras.Model | DependencyGraph, plan: dict[int, Iterable[int]] | dict[str, Iterable[int]]
) -> list[str]:
    """Layers with ``trainable=False`` whose weights ``plan`` slices, in graph order.

    ``plan`` is ``{group index: unit indices}`` or a request ``{layer name: channels}``.
    Frozen layers are pruned like any other; but a fine-tuning ``fit`` does not
    update them, so what pruning costs them is not recovered (see :func:`unfreeze_layers`).
    Names are those of the flat model (nested sub-models inlined).
    """
    dep = model if isinstance(model, DependencyGraph) else DependencyGraph(model)
    removed = dep.resolve(plan) if all(isinstance(k, str) for k in plan) else dep.removed_units(plan)
    removed_arr = np.fromiter(removed, dtype=np.int64, count=len(removed))
    changed = layer_weight_masks(dep, removed_arr)
    return [
        name for name, (op, _, _) in changed.items() if getattr(op, "weights", None) and not op.trainable
    ]


def frozen_pruned_message(names: list[str]) -> str:
    """The warning ``compress`` gives when it prunes frozen layers."""
    shown = ", ".join(f"'{n}'" for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"{len(names)} pruned layer(s) are frozen (trainable=False): {shown}. Fine-tuning does not "
        "update them, so the accuracy their pruning costs is not recovered. Pass "
        "unfreeze_pruned=True to fine-tune them (BatchNormalization stays frozen, in inference "
        "mode), or list them in ignored_layers to leave them unpruned."
    )


def unfreeze_layers(model: keras.Model, names: Iterable[str], keep_batchnorm_frozen: bool = True) -> list[str]:
    """Set ``trainable=True`` on layers ``names`` of ``model`` (a rebuilt, flat model); return them.

    ``BatchNormalization`` layers stay frozen unless ``keep_batchnorm_frozen=False``: a
    frozen BN runs in inference mode with its moving statistics, the Keras fine-tuning advice
    (a trainable one normalizes with each batch's statistics during ``fit``).
    Recompile the model afterwards: Keras fixes the trainable weights at ``compile``.
    """
    out = []
    for name in names:
        layer = model.get_layer(name)
        if keep_batchnorm_frozen and isinstance(layer, keras.layers.BatchNormalization):
            continue
        layer.trainable = True
        out.append(name)
    return out
