"""Preprocessing layers that map input *values* to new features: lookups, hashing, binning.

``StringLookup``/``IntegerLookup``/``TextVectorization``, ``Hashing``, ``HashedCrossing``,
``Discretization`` and ``CategoryEncoding`` consume values, not channels: their inputs are
frozen and their outputs are new channels that cannot be pruned (an ``Embedding`` after them
creates the first prunable channels). Their adapted state (vocabularies, bins) is copied on
rebuild by :func:`tf_gpp.graph.edit.copy_layer_state`.
"""

from __future__ import annotations

import keras

from tf_gpp.handlers.registry import OpaqueHandler, register_handler

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
