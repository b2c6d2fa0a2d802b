"""Data-free criteria: L1 filter norm (Li et al. 2017), BN scale (network slimming), random."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.handlers import get_handler
from tf_gpp.importance.base import Importance

_CONV_T = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def filter_l1(layer: Any) -> np.ndarray | None:
    """Sum of |weights| of each output channel's filter (None if the layer has none)."""
    own = get_handler(layer).filter_l1(layer)
    if own is not None:  # layers whose weights are not one kernel (recurrent, attention)
        return own
    if isinstance(layer, keras.layers.Embedding):
        return np.abs(np.asarray(layer.embeddings)).sum(axis=0)
    if isinstance(layer, keras.layers.SeparableConv1D | keras.layers.SeparableConv2D):
        k = np.abs(np.asarray(layer.pointwise_kernel))
        return k.reshape(-1, k.shape[-1]).sum(axis=0)
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return None
    k = np.abs(np.asarray(kernel))
    if isinstance(layer, _CONV_T):
        k = np.moveaxis(k, -2, -1)
    return k.reshape(-1, k.shape[-1]).sum(axis=0)


class L1Norm(Importance):
    """Li et al.: a filter's importance is the L1 norm of its weights; coupled filters sum."""

    name = "l1"

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        self._norms = {}
        for name, op in dep.graph.ops.items():
            norms = filter_l1(op)
            if norms is not None:
                self._norms[name] = norms

    def channel_scores(self, layer: str) -> np.ndarray | None:
        return self._norms.get(layer)


class BNScale(Importance):
    """Network slimming: |gamma| of the BatchNorm layers in the group (L1 norm when it has none)."""

    name = "bn_scale"
    _scores_consumers = True

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        self._gamma = {
            name: np.abs(np.asarray(op.gamma))
            for name, op in dep.graph.ops.items()
            if isinstance(op, keras.layers.BatchNormalization) and op.scale
        }
        self._l1 = L1Norm()
        self._l1.prepare(model, dep, data)

    def __call__(self, dep, group):
        if any(layer in self._gamma for layer in group.layers):
            return super().__call__(dep, group)
        return self._l1(dep, group)

    def channel_scores(self, layer: str) -> np.ndarray | None:
        return self._gamma.get(layer)


class RandomImportance(Importance):
    """Uniform random scores (a sanity baseline).

    ``seed=None`` (default) draws a new stream at every :meth:`prepare` from NumPy's global
    RNG, so it follows ``keras.utils.set_random_seed`` (as ``compress(seed=...)`` sets it
    each round); an int fixes one stream for the object's lifetime.
    """

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng = self._new_rng()

    def _new_rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed if self.seed is not None else np.random.randint(0, 2**31 - 1))

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        if self.seed is None:
            self._rng = self._new_rng()

    def __call__(self, dep, group):
        return self._rng.random(group.size)

    def get_config(self) -> dict:
        return {"seed": self.seed}
