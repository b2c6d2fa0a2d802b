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

from tf_gpp.errors import UnsupportedModelError

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class TensorRef:
    """One tensor of the graph: output ``index`` of call ``node`` of ``layer``."""

    layer: str
    node: int
    index: int


@dataclass
class Node:
    """One call of a layer (or operation) in the model."""

    layer_name: str
    node_index: int
    inputs: list[TensorRef]
    outputs: list[TensorRef] = field(default_factory=list)
    extra_args: list[Any] = field(default_factory=list)  # non-tensor call arguments


def _is_history(obj: Any) -> bool:
    return (
        isinstance(obj, list | tuple)
        and len(obj) == 3
        and isinstance(obj[0], str)
        and isinstance(obj[1], int)
        and isinstance(obj[2], int)
    )


def _history_refs(obj: Any) -> list[TensorRef]:
    """Flatten ``input_layers``/``output_layers`` (a triple, a list or a dict of triples)."""
    if _is_history(obj):
        return [TensorRef(obj[0], obj[1], obj[2])]
    if isinstance(obj, dict):
        return [r for v in obj.values() for r in _history_refs(v)]
    if isinstance(obj, list | tuple):
        return [r for v in obj for r in _history_refs(v)]
    return []


def _walk_args(obj: Any, tensors: list[tuple[TensorRef, Shape]], extra: list[Any]) -> None:
    if isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
        cfg = obj["config"]
        h = cfg["keras_history"]
        tensors.append((TensorRef(h[0], h[1], h[2]), tuple(cfg["shape"])))
    elif isinstance(obj, dict) and "class_name" in obj:
        extra.append(obj)  # a serialized object (array, dtype...)
    elif isinstance(obj, dict):
        for v in obj.values():
            _walk_args(v, tensors, extra)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _walk_args(v, tensors, extra)
    elif obj is not None:
        extra.append(obj)


def to_functional(model: keras.Model) -> tuple[keras.Model, dict]:
    """Return a functional model equivalent to ``model`` (a copy for Sequential) and its config."""
    if isinstance(model, keras.Sequential):
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' is not built: give it an input "
                "(keras.Input(shape=...) as first layer) or call it on data once."
            )
        x = inp = keras.Input(batch_shape=inputs[0].shape, dtype=inputs[0].dtype)
        for layer in model.layers:
            clone = layer.__class__.from_config(layer.get_config())
            x = clone(x)
            clone.set_weights(layer.get_weights())
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

    def __init__(self, model: keras.Model) -> None:
        if not isinstance(model, keras.Model):
            raise UnsupportedModelError(
                f"expected a keras.Model, got {type(model).__name__}"
            )
        self.source = model
        self.model, self.config = to_functional(model)
        self.ops: dict[str, Any] = {op.name: op for op in self.model.operations}
        self.layer_configs: dict[str, dict] = {}
        self.shapes: dict[TensorRef, Shape] = {}
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
                tensors: list[tuple[TensorRef, Shape]] = []
                extra: list[Any] = []
                _walk_args(inbound.get("args", []), tensors, extra)
                _walk_args(inbound.get("kwargs", {}), tensors, extra)
                for ref, shape in tensors:
                    self.shapes.setdefault(ref, shape)
                nodes[(name, k)] = Node(name, k, [r for r, _ in tensors], extra_args=extra)
        self.inputs = _history_refs(self.config["input_layers"])
        self.outputs = _history_refs(self.config["output_layers"])
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
