"""Write Keras models: the one writer of the functional config, beside its reader.

A functional config (``model.get_config()``) lists layer entries; an entry's
``inbound_nodes`` are its serialized calls, in which each tensor is a
``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history"}}`` and
``keras_history`` is ``[layer, call, output index]`` (a :class:`TensorRef`).
:class:`~tf_gpp.graph.model_graph.ModelGraph` reads that format; every change to it is made
here, and nothing outside ``tf_gpp/graph/`` reads or writes it:

* :func:`map_leaves` — the one walker over serialized call arguments and the
  ``input_layers``/``output_layers`` lists (:func:`leaves` and :func:`retarget` use it);
* :class:`ConfigEdit` — insert a layer after tensors, drop layers, give layers new configs,
  add outputs; then :meth:`ConfigEdit.build`;
* :func:`build_model` — a config and the live layers' state (weights, adapted statistics,
  vocabularies: :func:`copy_layer_state`) into a new functional model;
* :class:`ChannelMask` — the per-channel multiply inserted as channel masks and gradient gates.

``keras.models.clone_model(model, clone_function=..., call_function=...)`` is Keras' own hook
for such edits, and it was weighed: its ``call_function`` sees the new tensors of a call, with no
public link to the tensor of the original graph they stand for, so it cannot put a layer before
one *call* of a tensor and not another (channel masks must be so placed); it refuses
``call_function`` on Sequential models and keeps nested sub-models nested (``flatten_model``
inlines them). Editing the config serves every case with one mechanism.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tf_gpp.errors import UnsupportedModelError
from tf_gpp.handlers.registry import Keep, LayerHandler, NodeContext, WeightMasks, register_handler

Shape = tuple[int | None, ...]


# -- the serialized format -----------------------------------------------------------------------
@dataclass(frozen=True)
class TensorRef:
    """One tensor of the graph: output ``index`` of call ``node`` of ``layer`` (a ``keras_history``)."""

    layer: str
    node: int
    index: int


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a serialized symbolic tensor."""
    return isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__"


def is_history(obj: Any) -> bool:
    """Whether ``obj`` is a serialized ``keras_history`` triple ``[layer, node, index]``."""
    return (
        isinstance(obj, list | tuple)
        and len(obj) == 3
        and isinstance(obj[0], str)
        and isinstance(obj[1], int)
        and isinstance(obj[2], int)
    )


def map_leaves(obj: Any, fn: Callable[[Any], Any], histories: bool = False) -> Any:
    """``obj`` rebuilt with ``fn(leaf)`` in place of each leaf: the one walker of the format.

    Leaves are serialized tensors, other serialized objects (dicts with a ``class_name``, taken
    whole), plain values and, with ``histories=True`` (``input_layers``/``output_layers``),
    ``keras_history`` triples. Dicts and lists are walked in order (tuples come back as lists).
    """
    if is_tensor(obj) or (isinstance(obj, dict) and "class_name" in obj) or (histories and is_history(obj)):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_leaves(v, fn, histories) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [map_leaves(v, fn, histories) for v in obj]
    return fn(obj)


def leaves(obj: Any, histories: bool = False) -> list[Any]:
    """The leaves of ``obj`` in order (see :func:`map_leaves`)."""
    found: list[Any] = []
    map_leaves(obj, lambda leaf: found.append(leaf) or leaf, histories)
    return found


def ref_of(leaf: Any) -> TensorRef | None:
    """The tensor a leaf (serialized tensor or ``keras_history`` triple) refers to, else None."""
    if is_tensor(leaf):
        return TensorRef(*leaf["config"]["keras_history"])
    if is_history(leaf):
        return TensorRef(*leaf)
    return None


def tensor_refs(obj: Any, histories: bool = False) -> list[TensorRef]:
    """Every tensor reference in ``obj``, in order."""
    return [r for r in map(ref_of, leaves(obj, histories)) if r is not None]


def tensor_leaf(ref: TensorRef, shape: Shape, dtype: Any) -> dict:
    """A serialized symbolic tensor: output ``ref`` of ``shape`` and ``dtype`` (Keras rebuilds
    both from the live layers when it deserializes a model: they are informative)."""
    return {"class_name": "__keras_tensor__", "config": {
        "shape": list(shape), "dtype": None if dtype is None else str(dtype),
        "keras_history": [ref.layer, ref.node, ref.index]}}


def retarget(obj: Any, fn: Callable[[TensorRef], TensorRef], histories: bool = False) -> Any:
    """``obj`` (a copy) with every tensor reference ``r`` replaced by ``fn(r)``."""

    def swap(leaf: Any) -> Any:
        ref = ref_of(leaf)
        if ref is None:
            return leaf
        new = fn(ref)
        history = [new.layer, new.node, new.index]
        return history if not is_tensor(leaf) else {**leaf, "config": {**leaf["config"], "keras_history": history}}

    return map_leaves(obj, swap, histories)


# -- layer state -----------------------------------------------------------------------------------
# Adapted preprocessing layers keep state outside ``get_weights()``: ``Normalization`` caches its
# mean/variance (``finalize_state``), lookups keep a vocabulary table, ``Discretization`` its bins.
# :func:`copy_layer_state` copies it with the protocol Keras' own ``.keras`` saving uses
# (``save_own_variables``/``load_own_variables``, ``save_assets``/``load_assets``), so a copy keeps
# exactly what a saved-and-reloaded model keeps.
_VARIABLES = ("save_own_variables", "load_own_variables")
_ASSETS = ("save_assets", "load_assets")


def _overrides(layer: Any, method: str) -> bool:
    base = getattr(keras.layers.Layer, method, None)
    own = getattr(type(layer), method, None)
    return own is not None and own is not base


def keeps_state_outside_weights(layer: Any) -> bool:
    """True if ``layer`` has state that ``get_weights()`` does not hold: adapted
    preprocessing layers (a ``finalize_state`` cache, or vocabulary assets)."""
    return callable(getattr(layer, "finalize_state", None)) or any(_overrides(layer, m) for m in _ASSETS)


def _uncopyable_reason(layer: Any) -> str | None:
    """Why ``layer``'s adapted state cannot be copied, or None when it can."""
    if type(layer).__module__.startswith("keras."):
        return None
    if not callable(getattr(layer, "adapt", None)) or keeps_state_outside_weights(layer):
        return None
    if any(_overrides(layer, m) for m in _VARIABLES) or getattr(layer, "weights", None):
        return None
    return "has adapt() but keeps its adapted state neither in weights nor in the Keras saving protocol"


def has_state(op: Any) -> bool:
    """True if ``op`` (a layer or a Keras operation of a functional graph) has state to copy."""
    if not isinstance(op, keras.layers.Layer):
        return False
    return bool(op.weights) or keeps_state_outside_weights(op) or _uncopyable_reason(op) is not None


def state_fix(layer: Any) -> str:
    return (
        f"implement save_own_variables/load_own_variables (or save_assets/load_assets) on "
        f"{type(layer).__name__}, as .keras saving needs too, or pass the adapted values "
        "through its constructor/get_config() (e.g. Normalization(mean=..., variance=...), "
        "StringLookup(vocabulary=...))"
    )


def check_state_copyable(layer: Any) -> None:
    """Refuse, before any rebuild, a layer whose adapted state tf_gpp cannot copy."""
    reason = _uncopyable_reason(layer) if isinstance(layer, keras.layers.Layer) else None
    if reason is not None:
        raise UnsupportedModelError(f"layer '{layer.name}' ({type(layer).__name__}) {reason}: {state_fix(layer)}.")


class _ArrayStore(dict):
    """A ``save_own_variables`` store holding numpy copies (not the source's variables)."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, np.array(value))


def copy_layer_state(src: Any, dst: Any, weights: list[np.ndarray] | None = None) -> None:
    """Give ``dst`` (built from ``src``'s config) the full state of ``src``.

    ``weights`` replaces ``src.get_weights()`` when given (sliced weights of a
    pruned layer); a layer with state outside its weights cannot take sliced
    weights and is refused.
    """
    check_state_copyable(src)
    stateful = keeps_state_outside_weights(src)
    if weights is not None and stateful:
        raise UnsupportedModelError(
            f"layer '{src.name}' ({type(src).__name__}) keeps state outside its weights and "
            "cannot have channels removed; add it to ignored_layers, or register a handler "
            "that freezes its channels."
        )
    if getattr(src, "weights", None):
        dst.set_weights(src.get_weights() if weights is None else weights)
    if not stateful:
        return
    try:
        store = _ArrayStore()
        src.save_own_variables(store)
        dst.load_own_variables(store)
        if all(_overrides(src, m) for m in _ASSETS):
            with tempfile.TemporaryDirectory(prefix="tf_gpp_assets_") as d:
                src.save_assets(d)
                dst.load_assets(d)
        if not (_overrides(src, "load_own_variables") or _overrides(src, "load_assets")):
            finalize = getattr(dst, "finalize_state", None)
            if callable(finalize):
                finalize()
    except Exception as e:  # noqa: BLE001 - name the layer and the fix
        raise UnsupportedModelError(
            f"layer '{src.name}' ({type(src).__name__}): its state could not be copied into the "
            f"rebuilt layer ({type(e).__name__}: {e}). Fix: {state_fix(src)}."
        ) from e


# -- building a model ------------------------------------------------------------------------------
def custom_objects(ops: Iterable[Any]) -> dict[str, type]:
    """The model's own non-Keras layer classes, so its config deserializes."""
    out: dict[str, type] = {}
    for op in ops:
        cls = type(op)
        if not cls.__module__.startswith("keras."):
            out[cls.__name__] = cls
            out[keras.saving.get_registered_name(cls)] = cls
    return out


def model_from_config(config: dict, ops: Iterable[Any]) -> keras.Model:
    """Deserialize a functional config of a model that is live in this process.

    A ``Lambda`` of the live model is the user's own code already running here
    (not an untrusted file), so safe mode is lifted for this one call.
    """
    ops = list(ops)
    custom = custom_objects(ops)
    if any(isinstance(op, keras.layers.Lambda) for op in ops):
        try:
            from keras.src.saving.serialization_lib import SafeModeScope
        except ImportError:  # pragma: no cover - Keras layout changed
            return keras.Model.from_config(config, custom_objects=custom)
        with SafeModeScope(False):
            return keras.Model.from_config(config, custom_objects=custom)
    return keras.Model.from_config(config, custom_objects=custom)


WeightEdit = Callable[[str, Any], list[np.ndarray] | None]
"""``weights(name, layer)``: the weights layer ``name`` gets instead of ``layer``'s own (None: its own)."""


def build_model(config: dict, sources: dict[str, Any], weights: WeightEdit | None = None,
                what: str = "from its config") -> keras.Model:
    """A new functional model from ``config``; each layer named in ``sources`` receives the state
    of that live layer (entries without a source keep their fresh initial state).

    ``weights`` replaces some layers' weights (sliced, zeroed...). ``what`` completes the error
    message when the config does not deserialize (``"could not rebuild model 'm' <what>"``).
    """
    for op in sources.values():
        check_state_copyable(op)
    model_name = config.get("name")  # read first: Keras consumes the config it deserializes
    try:
        new = model_from_config(config, [op for op in sources.values() if op is not None])
    except UnsupportedModelError:
        raise
    except Exception as e:  # noqa: BLE001 - name the model-level cause for the user
        raise UnsupportedModelError(
            f"could not rebuild model '{model_name}' {what} ({type(e).__name__}: {e}). "
            "Custom layers must implement get_config() and be registered with "
            "keras.saving.register_keras_serializable()."
        ) from e
    for name, op in sources.items():
        if not has_state(op):
            continue
        values = weights(name, op) if weights is not None else None
        try:
            copy_layer_state(op, new.get_layer(name), values)
        except ValueError as e:
            if isinstance(e, UnsupportedModelError) or values is None:
                raise
            raise UnsupportedModelError(
                f"layer '{name}' ({type(op).__name__}): edited weights do not fit the rebuilt layer "
                f"({e}). Its handler does not match the layer; register a correct one with "
                "tf_gpp.register_handler."
            ) from e
    return new


class ConfigEdit:
    """Edits of a model's functional config, then :meth:`build`: the model itself is never touched.

    Made by :meth:`ModelGraph.edit <tf_gpp.graph.model_graph.ModelGraph.edit>`; layers are named
    as in that graph, tensors are :class:`TensorRef` of it.
    """

    def __init__(self, config: dict, ops: dict[str, Any], shapes: dict[TensorRef, Shape],
                 dtypes: dict[TensorRef, str | None]) -> None:
        self.config = copy.deepcopy(config)
        self._ops = ops
        self._shapes = shapes
        self._dtypes = dtypes
        self._entries = {e["name"]: e for e in self.config["layers"]}
        self._after: dict[str, list[dict]] = {}  # new entries, placed after the entry named
        self._dropped: set[str] = set()

    def free_name(self, name: str) -> str:
        """``name``, or ``name`` with ``_`` appended until no layer of the config has it."""
        taken = set(self._entries) | {e["name"] for es in self._after.values() for e in es}
        while name in taken:
            name += "_"
        return name

    def _calls(self, skip: str | None = None) -> Iterable[tuple[dict, int]]:
        """Every (entry, call index) of the config, new entries included."""
        for entry in [*self._entries.values(), *(e for es in self._after.values() for e in es)]:
            if entry["name"] != skip:
                for k in range(len(entry.get("inbound_nodes") or [])):
                    yield entry, k

    def _redirect(self, old: TensorRef, new: TensorRef, readers: Iterable[tuple[str, int]] | None,
                  skip: str | None = None) -> None:
        """Calls ``readers`` (``None``: every call but ``skip``'s, and the model outputs) read
        ``new`` where they read ``old``."""
        swap = lambda r: new if r == old else r  # noqa: E731
        calls = {(e["name"], k): e for e, k in self._calls(skip)}
        for name, k in calls if readers is None else readers:
            entry = calls[(name, k)]
            entry["inbound_nodes"][k] = retarget(entry["inbound_nodes"][k], swap)
        if readers is None:
            self.config["output_layers"] = retarget(self.config["output_layers"], swap, histories=True)

    def insert_after(self, ref: TensorRef, layer: keras.layers.Layer,
                     readers: Iterable[tuple[str, int]] | None = None) -> TensorRef:
        """Call ``layer`` (new, unbuilt, uniquely named) on tensor ``ref``; the calls ``readers``
        (``(layer name, call index)``; ``None``: every call and the model outputs) read its
        output instead of ``ref``. Returns that output."""
        entry = keras.saving.serialize_keras_object(layer)
        tensor = tensor_leaf(ref, self._shapes[ref], self._dtypes.get(ref))
        entry.update(name=layer.name, inbound_nodes=[{"args": [tensor], "kwargs": {}}])
        self._after.setdefault(ref.layer, []).append(entry)
        out = TensorRef(layer.name, 0, 0)
        self._redirect(ref, out, readers, skip=layer.name)
        return out

    def drop(self, name: str) -> TensorRef:
        """Remove layer ``name`` (called once, on one tensor): what read its output reads its input."""
        calls = self._entries[name].get("inbound_nodes") or []
        refs = tensor_refs(calls)
        if len(calls) != 1 or len(refs) != 1:
            raise UnsupportedModelError(f"layer '{name}' must be called once on one tensor to be removed")
        del self._entries[name]
        self._dropped.add(name)
        self._redirect(TensorRef(name, 0, 0), refs[0], None)
        return refs[0]

    def reconfigure(self, name: str, layer_config: dict) -> None:
        """Give layer ``name`` a new config (its build config goes: rebuilt from its new inputs)."""
        entry = self._entries[name]
        entry["config"] = layer_config
        entry.pop("build_config", None)

    def add_output(self, ref: TensorRef) -> None:
        """Make tensor ``ref`` one more output of the model (after its current ones)."""
        outputs = self.config["output_layers"]
        new = [ref.layer, ref.node, ref.index]
        several = isinstance(outputs, list) and isinstance(outputs[0], list)
        self.config["output_layers"] = [*outputs, new] if several else [outputs, new]

    def result(self) -> dict:
        """The edited config."""
        layers = []
        for entry in self.config["layers"]:
            if entry["name"] not in self._dropped:
                layers.append(entry)
            layers += self._after.get(entry["name"], [])
        return {**self.config, "layers": layers}

    def build(self, weights: WeightEdit | None = None, what: str = "from its config") -> keras.Model:
        """The edited model: every layer that stays keeps its state (see :func:`build_model`)."""
        sources = {name: op for name, op in self._ops.items() if name not in self._dropped}
        return build_model(self.result(), sources, weights, what)


# -- the per-channel multiply ----------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="tf_gpp")
class ChannelMask(keras.layers.Layer):
    """``x * keep``: ``keep`` is a vector over the last (channel) axis, initialised to ones.

    The one per-channel multiply tf_gpp inserts: as a channel mask, non-trainable and 0/1
    (:func:`tf_gpp.prunable`; saved with the model, so a masked model saved mid-training resumes
    with its masks), and as a gradient gate, trainable and left at one
    (:func:`tf_gpp.importance.gates.gated_model`). ``keep`` is trainable iff the layer is when
    it is built."""

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] is None:
            raise UnsupportedModelError(f"ChannelMask '{self.name}' needs a known channel count, got {input_shape}")
        self.keep = self.add_weight(shape=(int(input_shape[-1]),), initializer="ones",
                                    trainable=self.trainable, name="keep")

    def call(self, x: Any) -> Any:
        return x * keras.ops.cast(self.keep, x.dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


@register_handler(ChannelMask)
class ChannelMaskHandler(LayerHandler):
    """A mask is channel-wise: channels pass through; its ``keep`` vector is sliced with them."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        return [ctx.in_atoms[0]]

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        return {"keep": {0: keep.inputs[0]}}
