"""Inline nested sub-models into one functional graph: :func:`flatten_model`.

Transfer learning nests a whole backbone as one layer
(``Sequential([MobileNetV2(...), GlobalAveragePooling2D(), Dense(5)])`` or
``x = base(inp, training=False)``). The channel analysis sees such a layer as
opaque; flattening turns every layer of every nested functional or Sequential
sub-model (at any depth) into a layer of one functional model:

* **Weights and state** are copied (with :func:`~tf_gpp.graph.edit.copy_layer_state`,
  so adapted preprocessing layers keep their statistics and vocabularies);
  the user's model is never modified.
* **trainable**: a layer is trainable in the flat model iff it and every
  sub-model containing it are trainable (what Keras trains in the original).
* **training=**: a sub-model call ``base(x, training=False)`` passes
  ``training=False`` to each inlined layer call that accepts it, so the flat
  model runs exactly like the original in every mode (in Keras 3 an explicit
  ``model(x, training=True)`` or ``fit`` overrides that argument in the original
  and in the flat model alike; a frozen BatchNormalization runs in inference
  mode either way).
* **Names**: a layer keeps its own name when it is unique in the flat model;
  on a collision it becomes ``"<sub-model name>_<layer name>"`` (then
  ``_2``, ``_3``... if still taken). The outer model's own layers never change
  name. The sub-model's ``InputLayer`` disappears (its tensor is the call's input).
* **Shared sub-models**: a sub-model called several times becomes layers
  called several times (shared weights, as in the original). A layer shared
  between two *different* sub-models is refused.

Sub-models that are not functional/Sequential (subclassed ``keras.Model``)
are kept as one layer.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import keras

from tf_gpp.errors import UnsupportedModelError
from tf_gpp.graph.edit import (
    TensorRef,
    build_model,
    is_history,
    is_tensor,
    retarget,
    tensor_leaf,
    tensor_refs,
)


# -- which models nest -----------------------------------------------------------------
def is_graph_model(op: Any) -> bool:
    """A functional or plain Sequential Keras model (one whose graph can be inlined)."""
    if type(op) is keras.Sequential:
        return True
    return (
        isinstance(op, keras.Model)
        and type(op).__name__ == "Functional"
        and type(op).__module__.startswith("keras.")
    )


def _sub_layers(model: keras.Model) -> list[Any]:
    return list(model.operations) if type(model) is not keras.Sequential else list(model.layers)


def has_nested_models(model: keras.Model) -> bool:
    """True if ``model`` holds a functional or Sequential sub-model that can be inlined."""
    return isinstance(model, keras.Model) and is_graph_model(model) and any(
        is_graph_model(op) for op in _sub_layers(model)
    )


# -- one model's graph config ----------------------------------------------------------
def sequential_input(model: keras.Sequential) -> Any:
    """The input tensor of a built Sequential model; refuses an unbuilt one with the fix."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise UnsupportedModelError(
            f"Sequential model '{model.name}' is not built: give it an input "
            "(keras.Input(shape=...) as first layer) or call it on data once."
        )
    return inputs[0]


def _sequential_config(model: keras.Sequential) -> tuple[dict, dict[str, Any]]:
    """A functional config equivalent to a built Sequential model, and its layers by name."""
    spec = sequential_input(model)
    first = model.get_config().get("layers", [{}])[0]
    in_name = first["config"]["name"] if first.get("class_name") == "InputLayer" else f"{model.name}_input"
    in_entry = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": list(spec.shape), "dtype": str(spec.dtype), "name": in_name},
        "registered_name": None,
        "name": in_name,
        "inbound_nodes": [],
    }
    layers = [in_entry]
    ops: dict[str, Any] = {in_name: None}  # the input has no layer object to copy
    prev = TensorRef(in_name, 0, 0)
    shape, dtype = tuple(spec.shape), spec.dtype
    for layer in model.layers:
        entry = keras.saving.serialize_keras_object(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [{"args": [tensor_leaf(prev, shape, dtype)], "kwargs": {}}]
        layers.append(entry)
        ops[layer.name] = layer
        try:
            out = layer.compute_output_spec(keras.KerasTensor(shape, dtype=dtype))
            shape, dtype = tuple(out.shape), out.dtype
        except Exception:  # noqa: BLE001 - shapes are informative here, Keras rebuilds them
            shape = (None,)
        prev = TensorRef(layer.name, 0, 0)
    config = {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layers,
        "input_layers": [in_name, 0, 0],
        "output_layers": [prev.layer, prev.node, prev.index],
    }
    return config, ops


def graph_config(model: keras.Model) -> tuple[dict, dict[str, Any]]:
    """(functional config, {entry name: live operation}) of a functional or Sequential model."""
    if type(model) is keras.Sequential:
        return _sequential_config(model)
    config = copy.deepcopy(model.get_config())
    ops = {op.name: op for op in model.operations}
    return config, ops


# -- pairing a sub-model's inputs with a call's ----------------------------------------
def _pair_inputs(layers: Any, args: Any, where: str) -> list[tuple[TensorRef, TensorRef]]:
    """Match a sub-model's ``input_layers`` with the tensors it is called on: (inner input, outer tensor)."""
    if is_history(layers):
        if not is_tensor(args):
            if isinstance(args, list | tuple) and len(args) == 1:
                return _pair_inputs(layers, args[0], where)
            raise UnsupportedModelError(f"{where}: a non-tensor argument where an input tensor is expected")
        return [(TensorRef(*layers), TensorRef(*args["config"]["keras_history"]))]
    if isinstance(layers, dict):
        if not isinstance(args, dict) or set(args) != set(layers):
            raise UnsupportedModelError(f"{where}: call inputs do not match the sub-model's named inputs")
        return [p for k in layers for p in _pair_inputs(layers[k], args[k], where)]
    if isinstance(layers, list | tuple):
        if len(layers) == 1 and is_tensor(args):
            return _pair_inputs(layers[0], args, where)
        if not isinstance(args, list | tuple) or len(args) != len(layers):
            raise UnsupportedModelError(f"{where}: call inputs do not match the sub-model's inputs")
        return [p for a, b in zip(layers, args, strict=True) for p in _pair_inputs(a, b, where)]
    raise UnsupportedModelError(f"{where}: cannot read the sub-model's input layers")


def _accepts_training(op: Any) -> bool:
    call = getattr(op, "call", None)
    try:
        params = inspect.signature(call).parameters if call is not None else {}
    except (TypeError, ValueError):
        return False
    return "training" in params


# -- flattening ------------------------------------------------------------------------
def _flat_config(model: keras.Model) -> tuple[dict, dict[str, Any]]:
    """A functional config of ``model`` with every nested graph model inlined, and
    ``{flat layer name: the original layer object}``."""
    config, ops = graph_config(model)
    nested = {e["name"] for e in config["layers"] if is_graph_model(ops.get(e["name"]))}
    used = {e["name"] for e in config["layers"] if e["name"] not in nested}
    sources: dict[str, Any] = {}
    owner: dict[int, str] = {}  # id(layer object) -> sub-model it was inlined from
    redirect: dict[TensorRef, TensorRef] = {}
    entries: list[dict] = []
    for entry in config["layers"]:
        name = entry["name"]
        if name not in nested:
            entries.append(entry)
            sources[name] = ops[name]
            continue
        sub = ops[name]
        sub_config, sub_sources = _flat_config(sub)
        renames: dict[str, str] = {}
        inner_inputs = {r.layer for r in tensor_refs(sub_config["input_layers"], histories=True)}
        inner: list[dict] = []
        for e in sub_config["layers"]:
            if e["name"] in inner_inputs:
                continue
            obj = sub_sources[e["name"]]
            if id(obj) in owner and owner[id(obj)] != name:
                raise UnsupportedModelError(
                    f"layer '{obj.name}' is shared by sub-models '{owner[id(obj)]}' and '{name}': "
                    "tf_gpp cannot inline it. Call one sub-model that holds it from both places."
                )
            owner[id(obj)] = name
            new = _unique(e["name"], name, used)
            renames[e["name"]] = new
            e = dict(e, name=new, inbound_nodes=[])
            e["config"] = dict(e["config"], name=new)
            if "trainable" in e["config"]:
                e["config"]["trainable"] = bool(e["config"]["trainable"]) and bool(sub.trainable)
            inner.append(e)
            sources[new] = obj
        by_name = {e["name"]: e for e in inner}
        originals = {e["name"]: e for e in sub_config["layers"]}
        for k, call in enumerate(entry.get("inbound_nodes", [])):
            where = f"call {k} of sub-model '{name}'"
            args, kwargs = list(call.get("args", [])), dict(call.get("kwargs", {}))
            training = kwargs.pop("training", None)
            extra = sorted(k for k, v in kwargs.items() if not (k == "mask" and v is None))
            if extra or len(args) != 1:
                raise UnsupportedModelError(
                    f"{where}: only the inputs and training= can be passed to a sub-model that "
                    f"tf_gpp inlines (got {len(args)} positional argument(s), keywords {extra}). "
                    "Call the sub-model on its inputs only, or flatten it by hand."
                )
            feeds = dict(_pair_inputs(sub_config["input_layers"], args[0], where))
            offsets = {old: len(by_name[new]["inbound_nodes"]) for old, new in renames.items()}

            def local(r: TensorRef, offsets: dict = offsets, feeds: dict = feeds,
                      renames: dict = renames) -> TensorRef:
                if r in feeds:
                    return feeds[r]
                return TensorRef(renames[r.layer], offsets[r.layer] + r.node, r.index)

            for old, new in renames.items():
                for node in originals[old].get("inbound_nodes", []):
                    node = {
                        "args": retarget(node.get("args", []), local),
                        "kwargs": retarget(node.get("kwargs", {}), local),
                    }
                    if training is not None and _accepts_training(sources[new]):
                        node["kwargs"]["training"] = training
                    by_name[new]["inbound_nodes"].append(node)
            for t, r in enumerate(tensor_refs(sub_config["output_layers"], histories=True)):
                redirect[TensorRef(name, k, t)] = local(r)
        entries.extend(inner)

    def resolve(r: TensorRef) -> TensorRef:
        seen = 0
        while r in redirect:
            r = redirect[r]
            seen += 1
            if seen > len(redirect):
                raise UnsupportedModelError(f"model '{model.name}': cyclic sub-model references")
        return r

    for e in entries:
        e["inbound_nodes"] = [retarget(n, resolve) for n in e.get("inbound_nodes", [])]
    config["layers"] = entries
    config["output_layers"] = retarget(config["output_layers"], resolve, histories=True)
    return config, sources


def _unique(name: str, sub_model: str, used: set[str]) -> str:
    """``name`` if free, else ``<sub_model>_<name>`` (then ``_2``, ``_3``...); marks it used."""
    out = name if name not in used else f"{sub_model}_{name}"
    base, i = out, 2
    while out in used:
        out = f"{base}_{i}"
        i += 1
    used.add(out)
    return out


def flat_layers(model: keras.Model) -> dict[str, Any]:
    """``{name in flatten_model(model): the layer object of model}`` (nothing is built).

    Find, in a nested model, the layer a flat-model name (as used by
    ``channel_groups``, ``prune_channels``...) stands for.
    """
    if not is_graph_model(model):
        raise UnsupportedModelError(
            f"model '{model.name}' ({type(model).__name__}) is not a functional or Sequential model"
        )
    return _flat_config(model)[1]


def flatten_model(model: keras.Model) -> keras.Model:
    """One functional model with every nested functional/Sequential sub-model inlined.

    Weights, adapted preprocessing state, per-layer ``trainable`` flags and
    ``training=`` call arguments are kept; the user's model is not modified.
    Layer names stay the same unless two collide: then the inlined one is
    prefixed with its sub-model's name (``"<sub-model>_<layer>"``). A model
    without nested sub-models comes back as an equivalent functional copy.

    Raises:
        UnsupportedModelError: a subclassed model at the top level, a sub-model
            called with arguments other than its inputs and ``training``, or a
            layer shared between two different sub-models.
    """
    if not isinstance(model, keras.Model) or not is_graph_model(model):
        raise UnsupportedModelError(
            f"model '{getattr(model, 'name', model)}' ({type(model).__name__}) is not a functional "
            "or Sequential keras.Model: tf_gpp cannot read its graph. Rebuild it with the "
            "functional API or keras.Sequential."
        )
    config, sources = _flat_config(model)
    return build_model(config, sources, what="with its sub-models inlined")
