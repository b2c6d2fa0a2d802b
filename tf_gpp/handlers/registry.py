"""The handler registry: one small object per layer type.

A handler knows two things about its layer type:

* how channels flow through one call of the layer (:meth:`LayerHandler.propagate`):
  which output channels are new, which are the input's channels passed through
  (identity, concatenation offsets, flatten expansion, depthwise multiplier),
  and which must be coupled or frozen;
* how to rewrite the layer when channels go (:meth:`LayerHandler.new_config`,
  :meth:`LayerHandler.weight_masks`) and how much it costs (:meth:`LayerHandler.macs`).

Adding a layer type is one handler registered here with :func:`register_handler`.
A layer type with no handler is treated as opaque: every channel that touches
it is frozen (never pruned), so an unknown layer can never yield a wrong model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tf_gpp.errors import ArgumentError

Shape = tuple[int | None, ...]
# weight name -> {axis: boolean keep mask along that axis}
WeightMasks = dict[str, dict[int, np.ndarray]]


class ChannelAtoms(Protocol):
    """The channel atoms a trace hands the handlers (``tf_gpp.graph.atoms.AtomTable``)."""

    def new(self, n: int, creator: str, frozen: str | None = None) -> np.ndarray: ...

    def union(self, a: np.ndarray, b: np.ndarray) -> None: ...

    def freeze(self, a: np.ndarray, reason: str) -> None: ...


@dataclass
class NodeContext:
    """What a handler sees of one call (node) of a layer while channels are traced."""

    layer: Any
    config: dict
    in_atoms: list[np.ndarray]
    in_shapes: list[Shape]
    out_shapes: list[Shape]
    atoms: ChannelAtoms
    extra_args: list[Any] = field(default_factory=list)
    # the call argument each input is passed as: its position (an int) or its keyword
    arguments: list[int | str] = field(default_factory=list)
    internal: dict[str, np.ndarray] = field(default_factory=dict)  # see new_units

    @property
    def name(self) -> str:
        return self.layer.name

    def new_atoms(self, n: int, frozen: str | None = None) -> np.ndarray:
        """``n`` fresh channels created by this layer (frozen with a reason if given)."""
        return self.atoms.new(n, self.name, frozen)

    def new_units(self, key: str, n: int, frozen: str | None = None) -> np.ndarray:
        """``n`` units inside this layer that are on no tensor's channel axis (the heads of an
        attention layer): prunable like channels, with their keep mask in ``Keep.internal[key]``
        and their scores from :meth:`LayerHandler.unit_l1`/:meth:`LayerHandler.unit_probe`."""
        self.internal[key] = self.atoms.new(n, self.name, frozen)
        return self.internal[key]

    def unify(self, a: np.ndarray, b: np.ndarray) -> None:
        """Couple channels position by position: pruning one prunes the other."""
        self.atoms.union(a, b)

    def freeze(self, a: np.ndarray, reason: str) -> np.ndarray:
        """Mark channels as never prunable and return them."""
        self.atoms.freeze(a, reason)
        return a

    def freeze_all(self, reason: str) -> list[np.ndarray]:
        """The opaque treatment: freeze every input, emit frozen outputs."""
        for a in self.in_atoms:
            self.atoms.freeze(a, reason)
        return [self.new_atoms(_channels(s), frozen=reason) for s in self.out_shapes]

    def reason(self, why: str) -> str:
        return f"layer '{self.name}' ({type(self.layer).__name__}) {why}"


@dataclass
class Keep:
    """Boolean keep masks along the channel (last) axis of a node's tensors."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    in_shapes: list[Shape] = field(default_factory=list)
    internal: dict[str, np.ndarray] = field(default_factory=dict)  # units made by NodeContext.new_units

    @property
    def changed(self) -> bool:
        return not all(m.all() for m in (*self.inputs, *self.outputs, *self.internal.values()))


def masks_for(masks: WeightMasks, variable: Any) -> dict[int, np.ndarray]:
    """The keep masks of one weight ``variable`` of a layer: by its full ``path`` first (layers
    with several weights of one name, e.g. MultiHeadAttention's four ``kernel``), else by name."""
    path = getattr(variable, "path", None)
    if path is not None and path in masks:
        return masks[path]
    return masks.get(variable.name.split("/")[-1], {})


def _channels(shape: Shape) -> int:
    if not shape or shape[-1] is None:
        return 0
    return int(shape[-1])


class UnknownDimensionError(ArgumentError):
    """A cost depends on a dimension that is unknown (``None``): it is never priced as 1.
    :func:`tf_gpp.profile` turns it into a message naming the model input and the fix."""


def prod(dims: Sequence[int | None]) -> int:
    """Product of dimensions; raises :class:`UnknownDimensionError` if one is unknown."""
    out = 1
    for d in dims:
        if d is None:
            raise UnknownDimensionError(f"unknown dimension in {tuple(dims)}")
        out *= int(d)
    return out


class LayerHandler:
    """Base class: channel flow, rewrite and cost of one layer type.

    The default is the *opaque* behaviour: inputs frozen, outputs frozen and
    new, configuration and weights copied unchanged, zero MACs.
    """

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        """Return the channel atoms of each output tensor of this call."""
        return ctx.freeze_all(ctx.reason("has no channel handler; its channels are left as they are"))

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        """Return the layer config after pruning (``config`` is a copy: edit freely)."""
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        """Keep masks per weight name and axis; weights not named are copied whole."""
        return {}

    def filter_l1(self, layer: Any) -> np.ndarray | None:
        """Sum of |weights| making each channel of the first output (None: the generic
        ``kernel``-based rule of :func:`tf_gpp.importance.magnitude.filter_l1` applies)."""
        return None

    def unit_l1(self, layer: Any, key: str) -> np.ndarray | None:
        """Sum of |weights| making each internal unit ``key`` (see :meth:`NodeContext.new_units`)."""
        return None

    def unit_probe(self, layer: Any, key: str) -> tuple[Any, int] | None:
        """``(variable, axis)``: a weight whose slice ``i`` along ``axis`` carries internal unit
        ``i``'s whole contribution linearly (zeroing the slice removes the unit), so that
        ``sum(w * dS/dw)`` over the slice is the unit's first-order term for any scalar ``S``."""
        return None

    def macs(self, layer: Any, config: dict, in_shapes: list[Shape], out_shapes: list[Shape]) -> int | None:
        """Multiply-accumulates of one call, per sample (``None``: this call cannot be priced).

        Use :func:`prod` for products of dimensions: it refuses unknown ones."""
        return 0


class OpaqueHandler(LayerHandler):
    """Explicitly opaque layers (channel-mixing, or unsupported on purpose)."""

    def __init__(self, why: str = "mixes channels") -> None:
        self.why = why

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        return ctx.freeze_all(ctx.reason(self.why))


_REGISTRY: dict[type, LayerHandler] = {}
_DEFAULT = LayerHandler()


def register_handler(*layer_types: type) -> Callable[[Any], Any]:
    """Register a handler (class or instance) for one or more layer classes.

    Usable as a decorator on a :class:`LayerHandler` subclass, or called
    directly: ``register_handler(MyLayer)(MyHandler())``. Lookup is by exact
    class: a subclass of a supported layer is opaque until registered, since
    its ``call`` may mix channels.
    """

    def wrap(handler: Any) -> Any:
        instance = handler() if isinstance(handler, type) else handler
        if not isinstance(instance, LayerHandler):
            raise TypeError(f"{handler!r} is not a tf_gpp LayerHandler")
        for t in layer_types:
            _REGISTRY[t] = instance
        return handler

    return wrap


def get_handler(layer: Any) -> LayerHandler:
    """The handler for ``layer`` (the opaque default when none is registered)."""
    return _REGISTRY.get(type(layer), _DEFAULT)


def is_supported(layer: Any) -> bool:
    return type(layer) in _REGISTRY
