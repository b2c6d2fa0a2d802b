"""Parameters and multiply-accumulates (MACs) per sample, in total and per layer.

This is tf_gpp's one cost model: :func:`profile`, the planner's
:func:`tf_gpp.prune.estimate_cost` and the grower's budget all price a model
through :func:`price_graph`.

- MACs count the multiply-accumulates of weighted layers (Dense, convolutions of
  every kind, recurrent layers, multi-head attention), per sample, as each
  layer's handler defines them (see ``tf_gpp/handlers/recurrent.py`` for the
  recurrent and attention formulas). Normalization, activations, pooling,
  merges and reshapes count 0 (cheap and usually fused).
- A nested model is priced as a sub-profile, once per call.
- A layer that has weights, or may compute something costly, but has no cost
  rule (a custom layer, ``Lambda``, ``ConvLSTM2D``, ``ops.matmul``...) is listed
  in :attr:`Profile.unpriced`: never a silent 0.
- Costs depend on the input size. A model with an unknown input dimension
  (``keras.Input((None, None, 3))``) is priced at ``input_shape=``; without it,
  a cost that depends on the unknown size raises :class:`~tf_gpp.ArgumentError`.
  An unknown dimension is never priced as 1.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from tf_gpp.errors import ArgumentError, DataError, UnsupportedModelError
from tf_gpp.graph.model_graph import InputShapes, ModelGraph, Node, Shape
from tf_gpp.handlers import get_handler, is_supported
from tf_gpp.handlers.registry import UnknownDimensionError

# Weightless built-in ops that still compute products: no cost rule, so listed as unpriced.
_COSTLY_WEIGHTLESS = frozenset(
    {
        "Lambda", "Attention", "AdditiveAttention", "Dot", "Matmul", "Einsum", "Tensordot",
        "Conv", "DepthwiseConv", "SeparableConv", "ConvTranspose", "Inner", "Outer", "Kron", "Vdot",
    }
)


@dataclass(frozen=True)
class Cost:
    """A model's (or a target's) parameters and MACs per sample; ``None``: not set (a target
    on one figure only). The one cost type of compress, the pruner, the schedules and grow."""

    params: int | None = None
    macs: int | None = None

    def reached_by(self, cost: Any) -> bool:
        """Whether ``cost`` (anything with ``params`` and ``macs``) meets this target on every
        figure it sets."""
        return (self.macs is None or cost.macs <= self.macs) and (self.params is None or cost.params <= self.params)


@dataclass
class LayerProfile:
    name: str
    class_name: str
    params: int
    macs: int
    output_shape: tuple
    priced: bool = True


@dataclass
class UnpricedLayer:
    """A layer whose MACs tf_gpp cannot count (it adds 0 to :attr:`Profile.macs`)."""

    name: str
    class_name: str


@dataclass
class Profile:
    """Model cost: ``params`` (all weights), ``macs`` per sample, and per-layer rows.

    ``input_shapes`` maps each model input to the shape (without batch dimension)
    the figures are for; ``unpriced`` lists layers whose MACs could not be counted.
    """

    params: int
    macs: int
    layers: list[LayerProfile] = field(default_factory=list)
    input_shapes: dict[str, tuple] = field(default_factory=dict)
    unpriced: list[UnpricedLayer] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "macs": self.macs,
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "unpriced": [vars(u) for u in self.unpriced],
            "layers": [vars(r) | {"output_shape": list(r.output_shape)} for r in self.layers],
        }

    def describe_inputs(self) -> str:
        """``for input 'img' 224x224x3`` (one entry per model input)."""
        parts = [f"'{k}' {_dims(v)}" for k, v in self.input_shapes.items()]
        return "for input " + ", ".join(parts) if parts else ""

    def unpriced_warning(self) -> str | None:
        """One line naming the layers whose MACs are not counted, or None."""
        if not self.unpriced:
            return None
        names = ", ".join(f"{u.name} ({u.class_name})" for u in self.unpriced[:6])
        more = f" and {len(self.unpriced) - 6} more" if len(self.unpriced) > 6 else ""
        return (
            f"warning: MACs of {len(self.unpriced)} layer(s) not counted (no cost rule): {names}{more}; "
            "the MACs total is a lower bound"
        )

    def table(self, all_layers: bool = False) -> str:
        """A readable per-layer table (layers with params or MACs unless ``all_layers``)."""
        rows = [r for r in self.layers if all_layers or r.params or r.macs or not r.priced]
        w = max([len(r.name) for r in rows] + [5])
        c = max([len(r.class_name) for r in rows] + [5])
        lines = [
            f"{'layer':<{w}}  {'type':<{c}}  {'output':<20} {'params':>12} {'MACs':>15} {'MACs %':>7}",
            "-" * (w + c + 62),
        ]
        for r in rows:
            share = 100.0 * r.macs / self.macs if self.macs else 0.0
            shape = _dims(r.output_shape[1:])
            macs = f"{r.macs:>15,}" if r.priced else f"{'not priced':>15}"
            lines.append(f"{r.name:<{w}}  {r.class_name:<{c}}  {shape:<20} {r.params:>12,} {macs} {share:>6.1f}%")
        lines.append("-" * (w + c + 62))
        lines.append(f"{'total':<{w}}  {'':<{c}}  {'':<20} {self.params:>12,} {self.macs:>15,}")
        if self.input_shapes:
            lines.append(f"MACs per sample {self.describe_inputs()}")
        warning = self.unpriced_warning()
        if warning:
            lines.append(warning)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _dims(shape: tuple) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


# -- the cost model ------------------------------------------------------------
NodeShapes = Callable[[Node], tuple[list[Shape], list[Shape], dict]]
LayerParams = Callable[[str, Any], int]

# Sub-profiles of nested models, per graph and call shapes (the planner prices a graph many times).
_NESTED: weakref.WeakKeyDictionary[ModelGraph, dict] = weakref.WeakKeyDictionary()


def _free(op: Any) -> bool:
    """A weightless built-in layer or op that costs nothing worth counting."""
    return (
        not getattr(op, "weights", None)
        and type(op).__module__.startswith("keras.")
        and type(op).__name__ not in _COSTLY_WEIGHTLESS
    )


def _nested_profile(graph: ModelGraph, op: keras.Model, in_shapes: list[Shape]) -> Profile | None:
    memo = _NESTED.setdefault(graph, {})
    key = (op.name, tuple(map(tuple, in_shapes)))
    if key not in memo:
        try:
            sub = ModelGraph(op, input_shape=[tuple(s[1:]) for s in in_shapes])
        except UnsupportedModelError:  # a subclassed model: no graph to read
            memo[key] = None
        else:
            memo[key] = price_graph(sub)
    return memo[key]


def node_macs(graph: ModelGraph, node: Node, in_shapes: list[Shape], out_shapes: list[Shape],
              config: dict) -> tuple[int | None, list[UnpricedLayer]]:
    """MACs of one layer call (``None`` if it cannot be priced) and unpriced layers inside it."""
    if not node.inputs:
        return 0, []
    op = graph.op(node.layer_name)
    if isinstance(op, keras.Model):
        try:
            sub = _nested_profile(graph, op, in_shapes)
        except UnknownDimensionError as e:
            inner, cls, shapes = getattr(e, "layer", ("?", "?", []))
            e.layer = (f"{op.name}/{inner}", cls, shapes)
            raise
        if sub is None:
            return None, []
        return sub.macs, [UnpricedLayer(f"{op.name}/{u.name}", u.class_name) for u in sub.unpriced]
    if is_supported(op):
        macs = get_handler(op).macs(op, config, in_shapes, out_shapes)
        return (None if macs is None else int(macs)), []
    return (0 if _free(op) else None), []


def price_graph(graph: ModelGraph, node_shapes: NodeShapes | None = None,
                layer_params: LayerParams | None = None) -> Profile:
    """Price every layer call of ``graph`` at its resolved shapes.

    ``node_shapes(node) -> (in_shapes, out_shapes, config)`` and ``layer_params(name, op)``
    override the graph's own shapes and parameter counts (the planner prices a plan this
    way, with pruned widths). Raises :class:`UnknownDimensionError` when a cost depends
    on an unknown dimension (see :func:`unknown_size_error`).
    """
    rows: dict[str, LayerProfile] = {}
    unpriced: dict[str, UnpricedLayer] = {}
    for node in graph.nodes:
        op = graph.op(node.layer_name)
        if node_shapes is None:
            in_shapes, out_shapes = graph.node_shapes(node)
            config = graph.layer_configs[node.layer_name]["config"]
        else:
            in_shapes, out_shapes, config = node_shapes(node)
        try:
            macs, inner = node_macs(graph, node, in_shapes, out_shapes, config)
        except UnknownDimensionError as e:
            e.layer = getattr(e, "layer", None) or (node.layer_name, type(op).__name__, in_shapes)
            raise
        for u in inner:
            unpriced.setdefault(u.name, u)
        if macs is None:
            unpriced.setdefault(node.layer_name, UnpricedLayer(node.layer_name, type(op).__name__))
        if node.layer_name in rows:  # shared layer: every call costs
            rows[node.layer_name].macs += macs or 0
            rows[node.layer_name].priced &= macs is not None
            continue
        if layer_params is not None:
            params = layer_params(node.layer_name, op)
        else:
            params = int(op.count_params()) if getattr(op, "weights", None) else 0
        shape = tuple(out_shapes[0]) if out_shapes else ()
        rows[node.layer_name] = LayerProfile(
            node.layer_name, type(op).__name__, params, macs or 0, shape, priced=macs is not None
        )
    layers = list(rows.values())
    return Profile(
        params=sum(r.params for r in layers),
        macs=sum(r.macs for r in layers),
        layers=layers,
        input_shapes={name: tuple(s[1:]) for name, s in graph.input_shapes.items()},
        unpriced=list(unpriced.values()),
    )


def unknown_size_error(graph: ModelGraph, err: UnknownDimensionError) -> ArgumentError:
    """The user-facing refusal for a cost that depends on an unknown dimension."""
    name, cls, in_shapes = getattr(err, "layer", ("?", "?", []))
    dynamic = graph.dynamic_inputs()
    if not dynamic:
        return ArgumentError(
            f"cannot price layer '{name}' ({cls}): its input shape {list(map(tuple, in_shapes))} has an "
            "unknown dimension the model's inputs do not determine; build the model with fixed sizes"
        )
    parts, examples = [], []
    for inp, shape in dynamic.items():
        letters = iter("HWDTUV")
        dims = [str(d) if d is not None else next(letters, "N") for d in shape[1:]]
        parts.append(f"'{inp}' (shape {tuple(shape)})")
        examples.append(f"({', '.join(dims)}{',' if len(dims) == 1 else ''})")
    given = examples[0] if len(examples) == 1 else "[" + ", ".join(examples) + "]"
    cli = ",".join("224" if not d.isdigit() else d for d in examples[0].strip("(),").split(", "))
    return ArgumentError(
        f"cannot price layer '{name}' ({cls}): its cost depends on the unknown size of model input "
        f"{', '.join(parts)}; pass the size the model runs at, e.g. tf_gpp.profile(model, input_shape={given}) "
        f"(CLI: --input-shape {cli}), or build the model on keras.Input with a fixed shape"
    )


def profile(model: keras.Model, input_shape: InputShapes = None) -> Profile:
    """Count parameters and MACs per sample of a functional or Sequential model.

    ``input_shape`` fills unknown input dimensions (without the batch dimension):
    ``(224, 224, 3)``, a list of shapes (one per input) or ``{input name: shape}``;
    :func:`input_shape_from_data` derives it from a batch. Dimensions the model fixes
    must agree with it. The figures are for :attr:`Profile.input_shapes`.
    """
    graph = ModelGraph(model, input_shape=input_shape)
    try:
        return price_graph(graph)
    except UnknownDimensionError as e:
        raise unknown_size_error(graph, e) from None


def input_shape_from_data(model: keras.Model, data: Any) -> dict[str, tuple]:
    """``{input name: shape without batch dimension}`` of ``model``'s inputs, read from a
    batch of ``data``: an array, a list of arrays (multi-input), a dict by input name, an
    ``(x, y)``/``(x, y, w)`` tuple, or a ``tf.data.Dataset`` (its first batch).
    The result is a valid ``input_shape=`` for :func:`profile` and the planner."""
    graph = ModelGraph(model)
    names = graph.input_names
    if hasattr(data, "element_spec") and hasattr(data, "take"):  # a tf.data.Dataset
        data = next(iter(data.take(1)))
    if isinstance(data, tuple) and 1 <= len(data) <= 3:
        data = data[0]  # (x,), (x, y) or (x, y, sample_weight), as model.fit reads a tuple
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        if missing:
            raise DataError(
                f"the data batch is a dict with keys {sorted(data)} but the model's input(s) {missing} "
                "are not among them: key the inputs by input layer name"
            )
        xs = [data[n] for n in names]
    elif isinstance(data, list | tuple) and len(names) > 1:
        xs = list(data)
    else:
        xs = [data]
    if len(xs) != len(names):
        raise DataError(f"the data batch has {len(xs)} input arrays but the model has {len(names)} inputs {names}")
    out = {}
    for name, x in zip(names, xs, strict=True):
        shape = tuple(np.shape(x))
        rank = len(graph.input_shapes[name])
        if len(shape) != rank:
            raise DataError(
                f"the data for input '{name}' has shape {shape} but the model expects rank {rank} "
                f"({tuple(graph.input_shapes[name])}, batch first): batch the data"
            )
        out[name] = tuple(int(d) for d in shape[1:])
    return out
