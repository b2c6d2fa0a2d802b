"""Preprocessing layers: handlers, and the layer state that is not in ``get_weights()``.

Adapted preprocessing layers keep state outside their weights: ``Normalization``
caches its mean/variance as constants computed from its weights
(``finalize_state``), ``StringLookup``/``IntegerLookup``/``TextVectorization``
keep their vocabulary in a lookup table, ``Discretization`` its bin boundaries
in its config. Copying ``get_weights()`` into a layer rebuilt from its config
silently loses such state.

:func:`copy_layer_state` copies a layer's complete state with the public
protocol Keras' own ``.keras`` saving uses: ``get_weights``/``set_weights``,
then ``save_own_variables``/``load_own_variables`` (which run
``finalize_state``) and ``save_assets``/``load_assets`` (vocabularies). A copy
therefore keeps exactly what a saved-and-reloaded model keeps, and the copy
saves and reloads the same way. A layer whose adapted state cannot be copied
that way is refused with :class:`~tf_gpp.UnsupportedModelError`.

Handlers: lookups, hashing, discretization and text vectorization consume
*values*, not channels: their inputs are frozen and their outputs are new
channels that cannot be pruned (an ``Embedding`` after them creates the first
prunable channels).
"""

from __future__ import annotations

import tempfile
from typing import Any

import keras
import numpy as np

from tf_gpp.errors import UnsupportedModelError
from tf_gpp.handlers.registry import OpaqueHandler, register_handler

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


_VALUE_LAYERS = [
    getattr(keras.layers, n)
    for n in (
        "StringLookup",
        "IntegerLookup",
        "TextVectorization",
        "Hashing",
        "HashedCrossing",
        "Discretization",
        "CategoryEncoding",
    )
    if hasattr(keras.layers, n)
]
register_handler(*_VALUE_LAYERS)(
    OpaqueHandler("maps input values to new features (lookup, hashing, binning): not channels")
)
