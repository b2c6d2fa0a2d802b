"""Choose which units to remove: per-group thresholds (the paper) or a global
ranking to a MACs/params target, under ``round_to``, minimum-width and
ignored-layer constraints. Also estimates a plan's cost without rebuilding.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import keras
import numpy as np

from tf_gpp.errors import ArgumentError, PruningRequestError
from tf_gpp.graph.dependency import ChannelGroup, DependencyGraph
from tf_gpp.handlers.registry import UnknownDimensionError, masks_for
from tf_gpp.profile import price_graph, unknown_size_error


@dataclass
class Constraints:
    """``round_to``: kept widths are multiples of it (when the group is at least that wide);
    ``min_channels``: never keep fewer; ``ignored_layers``: groups touching them are left alone;
    ``internal_units``: whether units inside a layer (attention heads) may go (masks, which
    act on tensors, cannot remove them); ``max_pruning_ratio``: the largest share of a group's
    width in the base model that may go, over all rounds (``1``: no limit), where the base
    widths are ``base_widths`` (producer layer name -> width, see :meth:`with_base`), else the
    group's current width."""

    round_to: int = 1
    min_channels: int = 1
    ignored_layers: set[str] = field(default_factory=set)
    internal_units: bool = True
    max_pruning_ratio: float = 1.0
    base_widths: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if int(self.round_to) < 1:
            raise PruningRequestError(f"round_to={self.round_to}: must be an integer >= 1")
        if int(self.min_channels) < 1:
            raise PruningRequestError(f"min_channels={self.min_channels}: must be an integer >= 1")
        names = self.ignored_layers
        if isinstance(names, str):  # one name, not its characters
            names = [names]
        if names is None:
            names = []
        try:
            names = list(names)
        except TypeError:
            raise PruningRequestError(
                f"ignored_layers={self.ignored_layers!r}: give a list of layer names") from None
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise PruningRequestError(
                f"ignored_layers holds {bad[0]!r} ({type(bad[0]).__name__}); give layer names (strings)")
        self.ignored_layers = set(names)
        ratio = self.max_pruning_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
            raise PruningRequestError(
                f"max_pruning_ratio={ratio!r}: the largest share of a layer's width that may go, in (0, 1] "
                "(e.g. 0.9 keeps at least 10% of every layer; 1: no limit)")

    def with_base(self, dep: DependencyGraph) -> Constraints:
        """These constraints with ``max_pruning_ratio`` measured against ``dep``'s widths (the
        base model's), unless they have base widths already or no ratio limit."""
        if self.max_pruning_ratio >= 1 or self.base_widths:
            return self
        widths = {p: g.size for g in dep.groups for p in g.producers}
        return dataclasses.replace(self, base_widths=widths)

    def floor(self, group: ChannelGroup) -> int:
        """The fewest units ``group`` may keep: ``min_channels``, and the share of its base
        width that ``max_pruning_ratio`` keeps."""
        floor = self.min_channels
        if self.max_pruning_ratio < 1:
            base = max((self.base_widths.get(p, 0) for p in group.producers), default=0) or group.size
            floor = max(floor, math.ceil(round((1 - self.max_pruning_ratio) * base, 9)))
        return floor

    def allowed(self, size: int, n_remove: int, group: ChannelGroup | None = None) -> int:
        """How many of ``n_remove`` requested removals a group of ``size`` (``group``, for
        ``max_pruning_ratio``) may do."""
        floor = self.min_channels if group is None else self.floor(group)
        keep = size - min(n_remove, size - min(floor, size))
        keep = max(keep, 1)
        if self.round_to > 1 and size >= self.round_to:
            keep = min(size, math.ceil(keep / self.round_to) * self.round_to)
        return size - keep


def _submodel_layers(model: object) -> dict[str, list[str]]:
    """``{sub-model name: names of the layers inside it, at any depth}`` of a nested model."""
    out: dict[str, list[str]] = {}

    def walk(layer: object) -> list[str]:
        inner: list[str] = []
        for sub in getattr(layer, "layers", None) or []:
            inner.append(sub.name)
            if isinstance(sub, keras.Model):
                inner.extend(walk(sub))
        out[layer.name] = inner
        return inner

    for layer in getattr(model, "layers", None) or []:
        if isinstance(layer, keras.Model):
            walk(layer)
    return out


def validate_ignored_layers(dep: DependencyGraph, names: Iterable[str]) -> set[str]:
    """The layer names of ``dep``'s model that ``names`` (an ``ignored_layers``) stands for.

    A nested sub-model's name stands for every layer inside it (nested models are inlined,
    so a layer may appear as ``<sub-model>_<layer>``).

    Raises:
        PruningRequestError: a name that is neither a layer nor a nested model of the model,
            naming the closest layer names.
    """
    ops = dep.graph.ops
    nested = _submodel_layers(getattr(dep.graph, "source", None))
    resolved: set[str] = set()
    for name in names:
        if name in ops:
            resolved.add(name)
        elif name in nested:
            resolved.update(n if n in ops else f"{name}_{n}" for n in nested[name])
        else:
            known = [*ops, *nested]
            close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
            hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
                    else f"its layers are {', '.join(list(ops)[:8])}{', ...' if len(ops) > 8 else ''}")
            raise PruningRequestError(
                f"ignored_layers names '{name}', which is not a layer of model '{dep.graph.model.name}'; "
                f"{hint} (tf-gpp inspect lists the layers)"
            )
    return resolved


def _is_input_layer(op: object) -> bool:
    return isinstance(op, keras.layers.InputLayer)


def prunable_groups(dep: DependencyGraph, constraints: Constraints) -> list[int]:
    """Groups the planner may shrink: those touching no ignored layer (unknown names refused),
    and units inside layers only if ``constraints.internal_units``."""
    ignored = validate_ignored_layers(dep, constraints.ignored_layers)
    return [g.index for g in dep.groups
            if not ignored.intersection(g.layers) and (constraints.internal_units or not g.internal)]


def _lowest(scores: np.ndarray, n: int) -> list[int]:
    return sorted(np.argsort(scores, kind="stable")[:n].tolist()) if n > 0 else []


def plan_threshold(
    dep: DependencyGraph, scores: dict[int, np.ndarray], eta: float, constraints: Constraints
) -> dict[int, list[int]]:
    """The CVIU rule (Eq. 13): in each group remove units with score ``< eta * std``, the
    standard deviation taken over the group's non-zero scores (0 if there are none)."""
    plan = {}
    for gi in prunable_groups(dep, constraints):
        s = np.asarray(scores[gi], dtype=np.float64)
        nonzero = s[s != 0]
        n = int(np.sum(s < eta * (np.std(nonzero) if nonzero.size else 0.0)))
        n = constraints.allowed(len(s), n, dep.groups[gi])
        if n:
            plan[gi] = _lowest(s, n)
    return plan


def estimate_cost(dep: DependencyGraph, plan: dict[int, list[int]]) -> tuple[int, int]:
    """(params, MACs per sample) of the model after ``plan``, without rebuilding it.

    Priced by :func:`tf_gpp.profile.price_graph` (the same cost model as :func:`tf_gpp.profile`)
    with the pruned widths and configs of :meth:`DependencyGraph.layer_edits` (what surgery
    would build), at the input shapes ``dep`` was built with (``DependencyGraph(model,
    input_shape=...)``); a cost depending on an unknown input size raises ``ArgumentError``.
    """
    removed = np.array(sorted(dep.removed_units(plan) if plan else set()), dtype=np.int64)
    g = dep.graph
    changes = dep.layer_edits(removed) if len(removed) else {}

    def layer_params(name: str, op) -> int:
        if not getattr(op, "weights", None):
            return 0
        if name not in changes:
            return int(op.count_params())
        masks = changes[name][1]
        params = 0
        for v in op.weights:
            shape = list(v.shape)
            for axis, mask in masks_for(masks, v).items():
                shape[axis % len(shape)] = int(mask.sum())
            params += int(np.prod(shape, dtype=np.int64))
        return params

    def node_shapes(node):
        in_shapes, out_shapes = g.node_shapes(node)
        config = g.layer_configs[node.layer_name]["config"]
        if len(removed) and node.inputs:
            keep = dep.keep_masks(node, removed)
            if keep.changed:
                in_shapes = [(*s[:-1], int(m.sum())) for s, m in zip(in_shapes, keep.inputs, strict=True)]
                out_shapes = [(*s[:-1], int(m.sum())) for s, m in zip(out_shapes, keep.outputs, strict=True)]
                config = changes[node.layer_name][2] if node.layer_name in changes else config
        return in_shapes, out_shapes, config

    try:
        cost = price_graph(g, node_shapes=node_shapes, layer_params=layer_params)
    except UnknownDimensionError as e:
        raise unknown_size_error(g, e) from None
    return cost.params, cost.macs


def plan_global(
    dep: DependencyGraph,
    scores: dict[int, np.ndarray],
    constraints: Constraints,
    target_macs: int | None = None,
    target_params: int | None = None,
    normalize: str = "mean",
) -> dict[int, list[int]]:
    """Remove the globally least important units until the target is met.

    Scores are normalised by their group's mean (``normalize="mean"``) so groups of different
    scale compare; the smallest number of removals meeting the target is found by bisection
    on the global ranking, with the cost estimated exactly.

    ``normalize="std"`` divides by the standard deviation of the group's non-zero scores
    instead: removing the units below rank k is then the CVIU per-group rule ``score < eta *
    std`` (:func:`plan_threshold`) with one ``eta`` for every group, the smallest that meets
    the target. Groups whose non-zero scores have no spread are left alone, as that rule
    leaves them.
    """
    if target_macs is None and target_params is None:
        raise PruningRequestError("plan_global needs target_macs or target_params (absolute counts)")
    if normalize not in ("mean", "std"):
        raise ArgumentError(f"plan_global(normalize={normalize!r}): choose 'mean' or 'std'")
    groups = prunable_groups(dep, constraints)
    entries = []
    for gi in groups:
        s = np.asarray(scores[gi], dtype=np.float64)
        if normalize == "std":
            nonzero = s[s != 0]
            spread = float(np.std(nonzero)) if nonzero.size else 0.0
            if spread <= 0:
                continue
            norm = s / spread
        else:
            norm = s / s.mean() if s.mean() > 0 else s
        entries += [(float(v), gi, i) for i, v in enumerate(norm)]
    entries.sort()

    def plan_for(k: int) -> dict[int, list[int]]:
        chosen: dict[int, int] = {}
        for _, gi, _ in entries[:k]:
            chosen[gi] = chosen.get(gi, 0) + 1
        plan = {}
        for gi, n in chosen.items():
            n = constraints.allowed(dep.groups[gi].size, n, dep.groups[gi])
            if n:
                plan[gi] = _lowest(np.asarray(scores[gi]), n)
        return plan

    def meets(plan: dict[int, list[int]]) -> bool:
        params, macs = estimate_cost(dep, plan)
        return (target_macs is None or macs <= target_macs) and (
            target_params is None or params <= target_params
        )

    full = plan_for(len(entries))
    if not meets(full):
        params, macs = estimate_cost(dep, full)
        # why channels are frozen, beyond the by-design model inputs and outputs
        reasons = list(dict.fromkeys(
            v for k, v in dep.frozen_reasons().items()
            if v and not v.startswith("channels reach model output") and not _is_input_layer(dep.graph.op(k))
        ))
        why = "; ".join(reasons[:3])
        raise PruningRequestError(
            f"target (macs<={target_macs}, params<={target_params}) cannot be met: the smallest model "
            f"the constraints allow has {macs:,} MACs and {params:,} params "
            f"(min_channels={constraints.min_channels}, round_to={constraints.round_to}, "
            f"max_pruning_ratio={constraints.max_pruning_ratio}, "
            f"{len(groups)} prunable groups). Raise the target or relax the constraints."
            + (f" Not prunable: {why}{' ...' if len(reasons) > 3 else ''}." if why else "")
        )
    lo, hi = 0, len(entries)
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(plan_for(mid)):
            hi = mid
        else:
            lo = mid + 1
    return plan_for(lo)


def group_scores(dep: DependencyGraph, importance, groups: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """Score every (or the given) group with a prepared importance."""
    ids = range(len(dep.groups)) if groups is None else groups
    out = {}
    for gi in ids:
        s = np.asarray(importance(dep, dep.groups[gi]), dtype=np.float64)
        if s.shape != (dep.groups[gi].size,) or not np.all(np.isfinite(s)):
            raise ArgumentError(
                f"{importance!r} returned scores of shape {s.shape} (finite: {np.all(np.isfinite(s))}) "
                f"for group {gi} of size {dep.groups[gi].size}; an Importance must return one finite "
                "score per unit of the group"
            )
        out[gi] = s
    return out
