"""Read a Keras 3 functional or Sequential model into a graph of layer calls.

The graph is read from the model's public serialized config (``get_config``:
layers, their ``inbound_nodes`` and the ``keras_history`` of each tensor),
plus the layer objects for weights. A Sequential model is first turned into an
equivalent functional one (a copy: the user's model is never touched).
"""

from __future__ import annotations

import copy
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import keras

from tf_gpp.errors import ArgumentError, UnsupportedModelError
from tf_gpp.graph.edit import (
    ConfigEdit,
    Shape,
    TensorRef,
    copy_layer_state,
    is_tensor,
    leaves,
    map_leaves,
    tensor_refs,
)
from tf_gpp.graph.flatten import flatten_model, has_nested_models, sequential_input

# What callers may pass as ``input_shape``: one shape (single-input model), a list of shapes
# in input order, or a dict {input name: shape}; shapes exclude the batch dimension.
InputShapes = Any


@dataclass
class Node:
    """One call of a layer (or operation) in the model."""

    layer_name: str
    node_index: int
    inputs: list[TensorRef]
    outputs: list[TensorRef] = field(default_factory=list)
    extra_args: list[Any] = field(default_factory=list)  # non-tensor call arguments
    # the call argument each input is passed as: its position (an int) or its keyword
    arguments: list[int | str] = field(default_factory=list)


def _read_call(call: dict) -> tuple[list[tuple[TensorRef, Shape, Any]], list[int | str], list[Any]]:
    """(tensors with shape and dtype, the argument each is passed as, the non-tensor arguments) of
    one serialized call."""
    tensors: list[tuple[TensorRef, Shape, Any]] = []
    arguments: list[int | str] = []
    extra: list[Any] = []
    named = [*enumerate(call.get("args", []) or []), *(call.get("kwargs", {}) or {}).items()]
    for argument, value in named:
        for leaf in leaves(value):
            if is_tensor(leaf):
                cfg = leaf["config"]
                tensors.append((TensorRef(*cfg["keras_history"]), tuple(cfg["shape"]), cfg.get("dtype")))
                arguments.append(argument)
            elif leaf is not None:
                extra.append(leaf)  # a plain value or a serialized object (array, dtype...)
    return tensors, arguments, extra


def _materialize(obj: Any, shapes: dict[TensorRef, Shape]) -> Any:
    """Call arguments of a serialized layer call, with symbolic tensors of the current shapes."""

    def leaf(x: Any) -> Any:
        if is_tensor(x):
            return keras.KerasTensor(shapes[TensorRef(*x["config"]["keras_history"])], dtype=x["config"].get("dtype"))
        return keras.saving.deserialize_keras_object(x) if isinstance(x, dict) else x

    return map_leaves(obj, leaf)


def _is_dims(obj: Any) -> bool:
    return isinstance(obj, list | tuple) and all(d is None or isinstance(d, int) for d in obj)


def normalize_input_shapes(input_shape: InputShapes, names: list[str], shapes: list[Shape]) -> dict[str, Shape]:
    """``input_shape`` as ``{input name: shape with batch dimension}`` for inputs ``names``
    of (batch-inclusive) ``shapes``. A shape may include a leading ``None`` batch dimension."""
    if isinstance(input_shape, dict):
        unknown = [k for k in input_shape if k not in names]
        if unknown:
            raise ArgumentError(f"input_shape names unknown input(s) {unknown}; the model's inputs are {names}")
        pairs = list(input_shape.items())
    elif _is_dims(input_shape) and input_shape and not isinstance(input_shape, str):
        if len(names) != 1:
            raise ArgumentError(
                f"input_shape={tuple(input_shape)} is one shape but the model has {len(names)} inputs "
                f"{names}: pass a list of shapes in that order or a dict {{input name: shape}}"
            )
        pairs = [(names[0], input_shape)]
    elif isinstance(input_shape, list | tuple) and all(_is_dims(s) for s in input_shape):
        if len(input_shape) != len(names):
            raise ArgumentError(
                f"input_shape gives {len(input_shape)} shapes but the model has {len(names)} inputs {names}"
            )
        pairs = list(zip(names, input_shape, strict=True))
    else:
        raise ArgumentError(
            f"input_shape={input_shape!r}: expected a shape like (224, 224, 3) without the batch "
            "dimension, a list of shapes (one per input) or a dict {input name: shape}"
        )
    out: dict[str, Shape] = {}
    for name, s in pairs:
        rank = len(shapes[names.index(name)])
        dims = tuple(None if d is None else int(d) for d in s)
        if len(dims) == rank and dims[0] is None:
            dims = dims[1:]
        if len(dims) != rank - 1 or any(d is not None and d < 1 for d in dims):
            raise ArgumentError(
                f"input_shape={tuple(s)} for input '{name}': expected {rank - 1} positive dimensions "
                f"(the input's shape without the batch dimension is {tuple(shapes[names.index(name)][1:])})"
            )
        out[name] = (None, *dims)
    return out


def to_functional(model: keras.Model) -> tuple[keras.Model, dict]:
    """Return a functional model equivalent to ``model`` (a copy for Sequential) and its config."""
    if isinstance(model, keras.Sequential):
        spec = sequential_input(model)
        x = inp = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
        for layer in model.layers:
            clone = layer.__class__.from_config(layer.get_config())
            x = clone(x)
            copy_layer_state(layer, clone)
        functional = keras.Model(inp, x, name=model.name)
        return functional, functional.get_config()
    config = _functional_config(model)
    if config is None:
        raise UnsupportedModelError(
            f"model '{model.name}' ({type(model).__name__}) is a subclassed keras.Model: "
            "it has no graph tf_gpp can read. Rebuild it with the functional API "
            "(keras.Model(inputs, outputs)) or keras.Sequential."
        )
    return model, config


def _functional_config(model: keras.Model) -> dict | None:
    try:
        cfg = model.get_config()
    except Exception:  # noqa: BLE001 - a subclassed model without get_config
        return None
    if isinstance(cfg, dict) and "layers" in cfg and "input_layers" in cfg:
        return cfg
    return None


class ModelGraph:
    """Layer calls of a functional model in topological order, with tensor shapes."""

    def __init__(self, model: keras.Model, input_shape: InputShapes = None) -> None:
        if not isinstance(model, keras.Model):
            raise UnsupportedModelError(
                f"expected a keras.Model, got {type(model).__name__}"
            )
        self.source = model
        # Nested sub-models are inlined first: the analysed (and rebuilt) model is flat.
        self.model, self.config = to_functional(flatten_model(model) if has_nested_models(model) else model)
        self.ops: dict[str, Any] = {op.name: op for op in self.model.operations}
        self.layer_configs: dict[str, dict] = {}
        self.shapes: dict[TensorRef, Shape] = {}
        self.dtypes: dict[TensorRef, Any] = {}
        nodes: dict[tuple[str, int], Node] = {}
        for entry in self.config["layers"]:
            name = entry["name"]
            if name not in self.ops:
                raise UnsupportedModelError(f"layer '{name}' of the config is missing in the model")
            self.layer_configs[name] = entry
            if entry["class_name"] == "InputLayer":
                shape = entry["config"].get("batch_shape") or entry["config"].get("batch_input_shape")
                ref = TensorRef(name, 0, 0)
                self.shapes[ref] = tuple(shape)
                nodes[(name, 0)] = Node(name, 0, [], [ref])
                continue
            for k, inbound in enumerate(entry.get("inbound_nodes", [])):
                tensors, arguments, extra = _read_call(inbound)
                for ref, shape, dtype in tensors:
                    self.shapes.setdefault(ref, shape)
                    self.dtypes.setdefault(ref, dtype)
                nodes[(name, k)] = Node(name, k, [r for r, _, _ in tensors], extra_args=extra, arguments=arguments)
        self.inputs = tensor_refs(self.config["input_layers"], histories=True)
        self.outputs = tensor_refs(self.config["output_layers"], histories=True)
        for ref, tensor in zip(self.outputs, keras.tree.flatten(self.model.outputs), strict=True):
            self.shapes.setdefault(ref, tuple(tensor.shape))
        # Outputs of each node: every referenced (layer, node, index), ordered.
        produced: dict[tuple[str, int], set[int]] = defaultdict(set)
        for ref in self.shapes:
            produced[(ref.layer, ref.node)].add(ref.index)
        for key, idx in produced.items():
            if key not in nodes:
                raise UnsupportedModelError(f"tensor of unknown layer call {key} in the config")
            node = nodes[key]
            node.outputs = [TensorRef(key[0], key[1], i) for i in range(max(idx) + 1)]
            for r in node.outputs:
                self.shapes.setdefault(r, (None,))
        self.nodes = self._toposort(nodes)
        self.consumers: dict[TensorRef, list[Node]] = defaultdict(list)
        for node in self.nodes:
            for ref in node.inputs:
                self.consumers[ref].append(node)
        self._resolve_input_shapes(input_shape)

    # -- shapes -----------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [r.layer for r in self.inputs]

    @property
    def input_shapes(self) -> dict[str, Shape]:
        """The shape of each model input the graph's shapes are for (batch dimension included)."""
        return {r.layer: self.shapes[r] for r in self.inputs}

    def dynamic_inputs(self) -> dict[str, Shape]:
        """Inputs with an unknown (None) dimension besides the batch one, and their shapes."""
        return {name: s for name, s in self.input_shapes.items() if any(d is None for d in s[1:])}

    def _resolve_input_shapes(self, input_shape: InputShapes) -> None:
        """Fill unknown input dimensions from ``input_shape`` and propagate the concrete shapes."""
        if input_shape is None:
            return
        given = normalize_input_shapes(input_shape, self.input_names, [self.shapes[r] for r in self.inputs])
        changed = False
        for ref in self.inputs:
            old, new = self.shapes[ref], given.get(ref.layer)
            if new is None:
                continue
            merged = []
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                if i == 0:
                    merged.append(a)
                elif a is None or a == b:
                    merged.append(b)
                elif b is None:
                    merged.append(a)
                else:
                    raise ArgumentError(
                        f"input_shape={tuple(new[1:])} disagrees with model input '{ref.layer}', whose "
                        f"shape is fixed at {tuple(old[1:])}: drop input_shape or give the model's own size"
                    )
            if tuple(merged) != tuple(old):
                self.shapes[ref] = tuple(merged)
                changed = True
        if changed:
            self._propagate_shapes()

    def _propagate_shapes(self) -> None:
        """Recompute every tensor shape from the input shapes, layer call by layer call, with
        each layer's own ``compute_output_spec`` (the shape inference Keras itself uses)."""
        for node in self.nodes:
            if not node.inputs:
                continue
            entry = self.layer_configs[node.layer_name]["inbound_nodes"][node.node_index]
            op = self.op(node.layer_name)
            try:
                args = _materialize(entry.get("args", []), self.shapes)
                kwargs = _materialize(entry.get("kwargs", {}), self.shapes)
                spec = op.compute_output_spec(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any layer may fail on the new shapes
                shapes = [self.shapes[r] for r in node.inputs]
                raise UnsupportedModelError(
                    f"cannot infer the output shape of layer '{node.layer_name}' ({type(op).__name__}) "
                    f"for inputs of shape {shapes}: {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                    "Check input_shape, or build the model at a fixed input size"
                ) from e
            flat = keras.tree.flatten(spec)
            for ref in node.outputs:
                if ref.index < len(flat):
                    self.shapes[ref] = tuple(flat[ref.index].shape)

    @staticmethod
    def _toposort(nodes: dict[tuple[str, int], Node]) -> list[Node]:
        indeg = {key: 0 for key in nodes}
        users: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
        for key, node in nodes.items():
            for ref in {(r.layer, r.node) for r in node.inputs}:
                indeg[key] += 1
                users[ref].append(key)
        order = list(nodes)  # config order breaks ties: deterministic
        queue = deque(k for k in order if indeg[k] == 0)
        out: list[Node] = []
        while queue:
            key = queue.popleft()
            out.append(nodes[key])
            for u in users[key]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    queue.append(u)
        if len(out) != len(nodes):
            raise UnsupportedModelError("the model graph has a cycle or a dangling reference")
        return out

    def nodes_of(self, name: str) -> list[Node]:
        """The calls of layer ``name``, in call order."""
        return sorted((n for n in self.nodes if n.layer_name == name), key=lambda n: n.node_index)

    def op(self, name: str) -> Any:
        return self.ops[name]

    def layer_config(self, name: str) -> dict:
        """The inner config of layer ``name`` (deep copy, safe to edit)."""
        return copy.deepcopy(self.layer_configs[name]["config"])

    def node_shapes(self, node: Node) -> tuple[list[Shape], list[Shape]]:
        return [self.shapes[r] for r in node.inputs], [self.shapes[r] for r in node.outputs]

    def edit(self) -> ConfigEdit:
        """An editor of a copy of this graph's config, whose :meth:`~ConfigEdit.build` gives each
        layer that stays this graph's layer state (:mod:`tf_gpp.graph.edit`)."""
        return ConfigEdit(self.config, self.ops, self.shapes, self.dtypes)
