"""Channel masks: prune inside the user's own ``fit``, then cut the masked units out.

``prunable(model)`` returns a copy of a functional/Sequential model with a
non-trainable :class:`~tf_gpp.graph.edit.ChannelMask` (a 0/1 vector, one entry per channel) on
every tensor that a *reducing* layer reads — a layer whose outputs do not
carry those channels on (a convolution, a Dense, a separable conv). A zero
there is exactly what removal gives: such a layer is linear in each input
channel, so a zero channel adds nothing (the engine's correctness rule, see
:mod:`tf_gpp.surgery`). Channel-wise layers between a producer and its
reducing consumers (BatchNormalization, activations, pooling, ``Add``,
``Concatenate``, depthwise convolutions) see the removed channels unchanged:
their kept channels do not depend on them, and whatever they compute for a
removed channel is zeroed before anything sums it. A mask after the
producer instead would not do: a BatchNormalization fed a zero channel
outputs ``beta - gamma * mean / sigma``, not 0.

Masks follow the channel groups: a unit (a filter with its BatchNorm channel,
the matching channels of every branch of an ``Add``...) is masked at every
position it has in every masked tensor at once, so coupled channels always go
together. :func:`strip` reads the masks, rebuilds the model without the
masked units (:func:`tf_gpp.surgery.rebuild`) and returns the physically slim
model, whose outputs equal the masked model's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tf_gpp.data.intake import as_dataset
from tf_gpp.errors import ArgumentError, PruningRequestError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.graph.edit import ChannelMask, TensorRef
from tf_gpp.graph.model_graph import InputShapes, ModelGraph
from tf_gpp.prune.planner import estimate_cost
from tf_gpp.push.model import strip as strip_push
from tf_gpp.recalibrate import recalibrate_batchnorm
from tf_gpp.surgery import rebuild

__all__ = ["ChannelMask", "MaskedView", "mask_channels", "masked_view", "prunable", "strip"]

_MASK_SUFFIX = "__gpp_mask"


# -- where masks go --------------------------------------------------------------------------------
def mask_sites(dep: DependencyGraph) -> dict[TensorRef, list[tuple[str, int]]]:
    """``{tensor: [(consumer layer, call index)]}``: the tensors to mask and the layer calls that
    must read them masked — calls reading prunable channels that their outputs do not carry on
    (masking a channel-wise use too, e.g. the second input of an ``Add``, is harmless)."""
    prunable = np.zeros(len(dep.atoms), dtype=bool)
    prunable[list(dep.unit_group)] = True
    sites: dict[TensorRef, list[tuple[str, int]]] = {}
    for node in dep.graph.nodes:
        # Channels carried on keep their atom ids (identity, concatenation, depthwise, flatten);
        # a layer that sums channels creates new atoms, even when coupling unites them later.
        carried = np.concatenate([dep.tensor_atoms[r] for r in node.outputs] or [np.zeros(0, np.int64)])
        for ref in dict.fromkeys(node.inputs):
            atoms = dep.tensor_atoms[ref]
            if np.any(prunable[dep.tensor_roots[ref]] & ~np.isin(atoms, carried)):
                sites.setdefault(ref, []).append((node.layer_name, node.node_index))
    return sites


def is_prunable(model: keras.Model) -> bool:
    """True if ``model`` holds channel masks (made by :func:`prunable`)."""
    return any(isinstance(la, ChannelMask) for la in getattr(model, "layers", ()))


def prunable(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with a :class:`ChannelMask` before every reducing use of prunable channels.

    All masks start at one: the returned model computes what ``model`` computes. Nested
    sub-models are inlined (as :func:`tf_gpp.flatten_model`); weights and state are copied, the
    user's model is not touched. Compile the returned model with your own optimizer and loss
    (under ``strategy.scope()`` for ``tf.distribute``), train it with a
    :class:`~tf_gpp.PruningCallback`, and export with :func:`strip`.
    """
    if is_prunable(model):
        raise ArgumentError(f"model '{model.name}' already holds channel masks: train it as it is")
    dep = DependencyGraph(model)
    edit = dep.graph.edit()
    for ref, users in mask_sites(dep).items():
        suffix = "" if (ref.node, ref.index) == (0, 0) else f"_{ref.node}_{ref.index}"
        name = edit.free_name(f"{ref.layer}{_MASK_SUFFIX}{suffix}")
        dtype = dep.graph.dtypes.get(ref) or "float32"
        edit.insert_after(ref, ChannelMask(name=name, trainable=False, dtype=dtype), readers=users)
    return edit.build()


# -- reading and writing masks ---------------------------------------------------------------------
@dataclass
class MaskedView:
    """A masked model seen as its plain model plus the units its masks remove.

    ``plain``: the model without masks (a copy with the current weights); ``dep``: its dependency
    graph (units are ``dep``'s); ``sources``: the tensor of ``plain`` each mask (by name) masks."""

    gated: keras.Model
    plain: keras.Model
    dep: DependencyGraph
    sources: dict[str, TensorRef]

    def _masks(self) -> dict[str, Any]:
        return {name: self.gated.get_layer(name) for name in self.sources}

    def maskable_units(self) -> set[int]:
        """Units with at least one masked position (the others cannot be masked)."""
        units = set(self.dep.unit_group)
        return {int(r) for ref in self.sources.values() for r in np.unique(self.dep.tensor_roots[ref])} & units

    def removed(self) -> set[int]:
        """The units the masks remove (zero at every one of their masked positions)."""
        zero: set[int] = set()
        one: set[int] = set()
        for name, layer in self._masks().items():
            keep = np.asarray(keras.ops.convert_to_numpy(layer.keep)) > 0.5
            roots = self.dep.tensor_roots[self.sources[name]]
            zero.update(roots[~keep].tolist())
            one.update(roots[keep].tolist())
        mixed = zero & one
        if mixed:
            gi, _ = self.dep.unit_group.get(next(iter(mixed)), (None, None))
            raise PruningRequestError(
                f"the masks of model '{self.gated.name}' zero a unit of group {gi} at some positions and "
                "keep it at others, so no slim model computes the same; set masks with "
                "tf_gpp.prune.mask_channels or tf_gpp.PruningCallback, not by hand"
            )
        return zero & set(self.dep.unit_group)

    def set_removed(self, removed: Iterable[int]) -> None:
        """Write the masks so exactly ``removed`` (units of ``dep``) are masked."""
        arr = np.fromiter((int(r) for r in removed), dtype=np.int64)
        for name, layer in self._masks().items():
            keep = ~np.isin(self.dep.tensor_roots[self.sources[name]], arr)
            layer.keep.assign(keep.astype(keras.backend.standardize_dtype(layer.keep.dtype)))

    def plan_of(self, removed: Iterable[int]) -> dict[int, list[int]]:
        """``removed`` units as a plan ``{group index: unit indices}`` of ``dep``."""
        plan: dict[int, list[int]] = {}
        for r in removed:
            gi, ui = self.dep.unit_group[int(r)]
            plan.setdefault(gi, []).append(ui)
        return {gi: sorted(v) for gi, v in plan.items()}

    def cost(self, removed: Iterable[int] | None = None) -> tuple[int, int]:
        """(params, MACs per sample) of the model once ``removed`` (default: the masked units) go."""
        removed = self.removed() if removed is None else removed
        return estimate_cost(self.dep, self.plan_of(removed))

    def units_from(self, slim_dep: DependencyGraph, removed: set[int], plan: dict[int, list[int]]) -> set[int]:
        """Units of ``dep`` for a ``plan`` made on ``slim_dep``, the graph of ``rebuild(dep, removed)``
        (rebuilding keeps channel order, so slim channel ``s`` of a layer is its ``s``-th kept one)."""
        gone = np.fromiter(removed, dtype=np.int64, count=len(removed))
        out: set[int] = set()
        for gi, units in plan.items():
            group = slim_dep.groups[gi]
            layer = group.producers[0]
            roots = self.dep.tensor_roots[TensorRef(layer, 0, 0)]
            kept = np.flatnonzero(~np.isin(roots, gone))
            for u in units:
                out.add(int(roots[kept[int(group.channels(layer)[int(u)][0])]]))
        return out


def _find_masked(model: keras.Model) -> keras.Model:
    """The masked model itself, or the one a wrapper (``PushModel``) trains."""
    if is_prunable(model):
        return model
    inner = getattr(model, "base_model", None)
    if isinstance(inner, keras.Model) and is_prunable(inner):
        return inner
    raise ArgumentError(
        f"model '{getattr(model, 'name', model)}' holds no channel masks: build it with "
        "gated = tf_gpp.prunable(model) and train gated (or PushModel(gated))"
    )


def masked_view(model: keras.Model, input_shape: InputShapes = None) -> MaskedView:
    """The :class:`MaskedView` of a masked model (or of a ``PushModel`` wrapping one)."""
    gated = _find_masked(model)
    g = ModelGraph(gated)
    edit = g.edit()
    sources = {name: edit.drop(name) for name in g.layer_configs if isinstance(g.op(name), ChannelMask)}
    plain = edit.build()
    return MaskedView(gated, plain, DependencyGraph(plain, input_shape=input_shape), sources)


def mask_channels(model: keras.Model, request: dict[str, Iterable[int]]) -> set[int]:
    """Mask output channels of layers of a masked model, with every channel coupled to them.

    ``request`` is as for :func:`tf_gpp.prune_channels` (``{layer: [channel indices]}``, layer
    names of the original model); masked units stay masked. Returns the masked units."""
    view = masked_view(model)
    removed = view.removed() | view.dep.resolve({k: list(v) for k, v in request.items()})
    unmaskable = removed - view.maskable_units()
    if unmaskable:
        raise PruningRequestError(f"{len(unmaskable)} requested unit(s) reach no layer that sums them: nothing "
                                  "to mask (they do not affect the outputs)")
    view.dep.removed_units(view.plan_of(removed))  # refuses emptied groups
    view.set_removed(removed)
    return removed


def strip(model: keras.Model, data: Any = None, *, steps: int | None = 100, batch_size: int = 64) -> keras.Model:
    """The physically slim functional model of a masked model: masks gone, masked units cut out.

    Also unwraps a :class:`~tf_gpp.PushModel` (as :func:`tf_gpp.push.strip`); a model without masks
    comes back as a plain copy. With ``data`` (any form ``model.fit`` takes, un-augmented training
    images at best) every BatchNormalization's moving statistics are re-estimated on ``steps``
    batches (:func:`tf_gpp.recalibrate_batchnorm`). The result is a new, uncompiled model (the
    masked model is untouched) that saves as ``.keras`` and converts with
    :func:`tf_gpp.convert.to_tflite`; its outputs equal the masked model's.
    """
    base = strip_push(model, copy=False)
    if is_prunable(base):
        view = masked_view(base)
        slim = rebuild(view.dep, view.removed())
    else:
        slim = rebuild(DependencyGraph(base), set())
    if data is not None:
        recalibrate_batchnorm(slim, as_dataset(data, batch_size=batch_size, model=slim, what="data"), steps)
    return slim
