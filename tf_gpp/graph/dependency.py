"""Channel-dependency analysis: trace channel atoms through every layer call
and group the prunable units.

A *unit* is a set of channels that must go together (a conv filter with the
BatchNorm channel after it, the matching channel of every branch of an
``Add``...). A :class:`ChannelGroup` gathers the units that flow through the
same tensors: pruning index ``i`` of a group removes unit ``i`` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from tf_gpp.errors import PruningRequestError, UnsupportedModelError
from tf_gpp.graph.atoms import AtomTable
from tf_gpp.graph.edit import TensorRef
from tf_gpp.graph.model_graph import InputShapes, ModelGraph, Node
from tf_gpp.handlers import Keep, NodeContext, get_handler


@dataclass
class ChannelGroup:
    """Coupled channels that are pruned together.

    ``producers`` create the channels (conv filters, Dense units); ``consumers``
    read them (BatchNorm, activations, the next conv...). ``size`` is the number
    of prunable units; unit ``i`` is channel ``channels(layer)[i]`` of each member.
    A group of units inside a layer (attention heads) has ``internal = {layer: key}``: its
    positions index that layer's units ``key``, not its output channels.
    """

    index: int
    producers: list[str]
    consumers: list[str]
    size: int
    units: np.ndarray = field(repr=False)
    _positions: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    internal: dict[str, str] = field(default_factory=dict)

    def channels(self, layer: str) -> list[np.ndarray]:
        """Output-channel positions of ``layer`` holding each unit (one array per unit)."""
        if layer not in self._positions:
            raise KeyError(f"layer '{layer}' is not a member of group {self.index}")
        return self._positions[layer]

    @property
    def layers(self) -> list[str]:
        return list(self._positions)

    def __repr__(self) -> str:
        return (
            f"ChannelGroup(#{self.index}, size={self.size}, producers={self.producers}, "
            f"consumers={self.consumers})"
        )


class DependencyGraph:
    """The channel dependencies of a model: groups of units and their frozen reasons."""

    def __init__(self, model: keras.Model, input_shape: InputShapes = None) -> None:
        """``input_shape`` fills unknown input dimensions (see :func:`tf_gpp.profile`); the
        planner prices plans at the shapes resolved here."""
        self.graph = ModelGraph(model, input_shape=input_shape)
        self.atoms = AtomTable()
        self.tensor_atoms: dict[TensorRef, np.ndarray] = {}
        # units inside a layer (NodeContext.new_units), per (layer, key): one call's, calls coupled
        self.internal_atoms: dict[tuple[str, str], np.ndarray] = {}
        self._trace()
        self._finalize()

    # -- tracing --------------------------------------------------------------
    def _trace(self) -> None:
        g = self.graph
        first_node: dict[str, Node] = {}
        for node in g.nodes:
            layer = g.op(node.layer_name)
            in_shapes, out_shapes = g.node_shapes(node)
            ctx = NodeContext(
                layer=layer,
                config=g.layer_configs[node.layer_name]["config"],
                in_atoms=[self.tensor_atoms[r] for r in node.inputs],
                in_shapes=in_shapes,
                out_shapes=out_shapes,
                atoms=self.atoms,
                extra_args=node.extra_args,
                arguments=node.arguments,
            )
            handler = get_handler(layer)
            outs = handler.propagate(ctx)
            if len(outs) != len(node.outputs):
                raise UnsupportedModelError(
                    f"handler {type(handler).__name__} gave {len(outs)} outputs for layer "
                    f"'{node.layer_name}', which has {len(node.outputs)}"
                )
            for ref, atoms, shape in zip(node.outputs, outs, out_shapes, strict=True):
                if shape and shape[-1] is not None and len(atoms) != shape[-1]:
                    raise UnsupportedModelError(
                        f"handler {type(handler).__name__} traced {len(atoms)} channels out of "
                        f"layer '{node.layer_name}', which outputs {shape[-1]}: a handler bug; "
                        "register a correct handler with tf_gpp.register_handler"
                    )
                self.tensor_atoms[ref] = atoms
            for key, atoms in ctx.internal.items():
                first = self.internal_atoms.setdefault((node.layer_name, key), atoms)
                if first is not atoms:  # another call of a shared layer: the same weights
                    self.atoms.union(first, atoms)
            # A layer called several times shares its weights: couple its calls.
            if node.layer_name in first_node:
                self._couple_calls(first_node[node.layer_name], node)
            else:
                first_node[node.layer_name] = node
        for ref in g.outputs:
            name = ref.layer
            self.atoms.freeze(self.tensor_atoms[ref], f"channels reach model output '{name}'")

    def _couple_calls(self, a: Node, b: Node) -> None:
        pairs = list(zip(a.inputs, b.inputs, strict=False)) + list(zip(a.outputs, b.outputs, strict=False))
        for ra, rb in pairs:
            xa, xb = self.tensor_atoms[ra], self.tensor_atoms[rb]
            if len(xa) == len(xb):
                self.atoms.union(xa, xb)
            else:
                reason = f"shared layer '{a.layer_name}' is called on tensors of different widths"
                self.atoms.freeze(xa, reason)
                self.atoms.freeze(xb, reason)

    # -- groups ---------------------------------------------------------------
    def _finalize(self) -> None:
        g = self.graph
        n = len(self.atoms)
        roots_of = self.atoms.all_roots()
        self.tensor_roots = {ref: roots_of[a] for ref, a in self.tensor_atoms.items()}
        self.internal_roots = {k: roots_of[a] for k, a in self.internal_atoms.items()}
        frozen = np.zeros(n, dtype=bool)
        frozen[list(self.atoms.frozen_roots())] = True
        self._frozen = frozen
        # Signature of a unit: which tensors it appears in (random hash sum, order-free).
        rng = np.random.default_rng(0)
        sig = np.zeros(n, dtype=np.uint64)
        seen = np.zeros(n, dtype=bool)
        uniques = {ref: np.unique(r) for ref, r in self.tensor_roots.items()}
        for node in g.nodes:
            for ref in node.outputs:
                u = uniques[ref]
                sig[u] += rng.integers(1, 2**63, dtype=np.uint64)
                seen[u] = True
        for roots in self.internal_roots.values():
            u = np.unique(roots)
            sig[u] += rng.integers(1, 2**63, dtype=np.uint64)
            seen[u] = True
        candidates = np.flatnonzero(seen & ~frozen & (roots_of == np.arange(n)))
        by_sig: dict[int, list[int]] = {}
        for r in candidates.tolist():
            by_sig.setdefault(int(sig[r]), []).append(r)
        group_of = np.full(n, -1, dtype=np.int64)
        for gi, roots in enumerate(by_sig.values()):
            group_of[roots] = gi
        # Producers: creators of the atoms of each group, in graph order.
        layer_ids = {node.layer_name: i for i, node in reversed(list(enumerate(g.nodes)))}
        names = {i: name for name, i in layer_ids.items()}  # by first node index (shared layers)
        creator_id = np.fromiter(
            (layer_ids[self.atoms.creator(a)] for a in range(n)), dtype=np.int64, count=n
        )
        atom_group = group_of[roots_of]
        pairs = np.unique(np.stack([atom_group, creator_id])[:, atom_group >= 0], axis=1)
        producers: list[list[str]] = [[] for _ in by_sig]
        for gi, li in pairs.T.tolist():
            producers[gi].append(names[li])
        # Consumers and member positions, one pass over the graph.
        consumers: list[list[str]] = [[] for _ in by_sig]
        member_roots: list[dict[str, np.ndarray]] = [{} for _ in by_sig]
        for node in g.nodes:
            for ref in node.inputs:
                for gi in np.unique(group_of[uniques[ref]]).tolist():
                    if gi >= 0 and node.layer_name not in consumers[gi] and node.layer_name not in producers[gi]:
                        consumers[gi].append(node.layer_name)
            if node.node_index == 0 and node.outputs:
                tr = self.tensor_roots[node.outputs[0]]
                for gi in np.unique(group_of[uniques[node.outputs[0]]]).tolist():
                    if gi >= 0:
                        member_roots[gi].setdefault(node.layer_name, tr)
        internal_of: list[dict[str, str]] = [{} for _ in by_sig]
        for (name, key), tr in self.internal_roots.items():
            for gi in np.unique(group_of[tr]).tolist():
                if gi >= 0:  # internal units only ever group with themselves (they are on no tensor)
                    member_roots[gi][name] = tr
                    internal_of[gi][name] = key
        self.groups: list[ChannelGroup] = []
        self.unit_group: dict[int, tuple[int, int]] = {}
        unit_index = np.full(n, -1, dtype=np.int64)
        for gi, roots in enumerate(by_sig.values()):
            # Units ordered by first position in the first producer's output.
            first = member_roots[gi][producers[gi][0]]
            firsts = {}
            for p, r in enumerate(first.tolist()):
                firsts.setdefault(r, p)
            units = np.array(sorted(roots, key=lambda r: firsts.get(r, 1 << 60)), dtype=np.int64)
            unit_index[units] = np.arange(len(units))
            positions = {
                name: _positions_per_unit(unit_index, group_of, tr, gi, len(units))
                for name, tr in member_roots[gi].items()
            }
            self.groups.append(
                ChannelGroup(gi, producers[gi], consumers[gi], len(units), units, positions, internal_of[gi])
            )
            for i, r in enumerate(units.tolist()):
                self.unit_group[r] = (gi, i)

    # -- requests -------------------------------------------------------------
    def resolve(self, request: dict[str, list[int]]) -> set[int]:
        """Turn ``{layer: output channel indices}`` into the set of units to remove."""
        if not isinstance(request, dict):
            raise PruningRequestError(
                "prune request must be a dict {layer_name: [channel indices]}, "
                f"got {type(request).__name__}"
            )
        removed: set[int] = set()
        for name, indices in request.items():
            if isinstance(indices, int | np.integer) and not isinstance(indices, bool | np.bool_):
                indices = [indices]
            if name not in self.graph.ops:
                known = ", ".join(list(self.graph.ops)[:8])
                raise PruningRequestError(f"no layer named '{name}' in the model (layers: {known}, ...)")
            ref = TensorRef(name, 0, 0)
            if ref not in self.tensor_roots:
                raise PruningRequestError(f"layer '{name}' has no output channels to prune")
            roots = self.tensor_roots[ref]
            try:
                values = list(np.asarray(indices if isinstance(indices, np.ndarray) else list(indices),
                                         dtype=object).reshape(-1))
            except (TypeError, ValueError):
                values = [indices]
            bad = [v for v in values if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer)]
            if bad:
                raise PruningRequestError(
                    f"channel indices for layer '{name}' must be whole numbers 0..{len(roots) - 1}, got "
                    f"{bad[0]!r} ({type(bad[0]).__name__}); pass a list of ints such as [0, 3]"
                )
            idx = np.asarray(values, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= len(roots)):
                raise PruningRequestError(
                    f"channel index out of range for layer '{name}': it has {len(roots)} "
                    f"output channels (valid 0..{len(roots) - 1}; negative indices are not accepted), "
                    f"got {sorted(set(idx.tolist()))[:10]}"
                )
            for r in np.unique(roots[idx]).tolist():
                if self._frozen[r]:
                    raise PruningRequestError(
                        f"cannot prune channels of layer '{name}': {self.atoms.frozen_reason(r)}. "
                        "Use tf_gpp.channel_groups(model) to see which channels are prunable."
                    )
                removed.add(r)
        self._check_not_empty(removed)
        return removed

    def removed_units(self, plan: dict[int, list[int]]) -> set[int]:
        """Turn ``{group index: unit indices}`` into the set of units to remove."""
        removed: set[int] = set()
        for gi, units in plan.items():
            group = self.groups[gi]
            for u in units:
                if not 0 <= int(u) < group.size:
                    raise PruningRequestError(f"unit {u} out of range for group {gi} of size {group.size}")
                removed.add(int(group.units[int(u)]))
        self._check_not_empty(removed)
        return removed

    def _check_not_empty(self, removed: set[int]) -> None:
        counts: dict[int, int] = {}
        for r in removed:
            gi, _ = self.unit_group[r]
            counts[gi] = counts.get(gi, 0) + 1
        for gi, n in counts.items():
            group = self.groups[gi]
            if n >= group.size:
                raise PruningRequestError(
                    f"the request removes all {group.size} channels of group {gi} "
                    f"(producers {group.producers}): keep at least one"
                )

    def keep_masks(self, node: Node, removed: np.ndarray) -> Keep:
        in_shapes, _ = self.graph.node_shapes(node)
        return Keep(
            inputs=[~np.isin(self.tensor_roots[r], removed) for r in node.inputs],
            outputs=[~np.isin(self.tensor_roots[r], removed) for r in node.outputs],
            in_shapes=in_shapes,
            internal={key: ~np.isin(roots, removed) for (name, key), roots in self.internal_roots.items()
                      if name == node.layer_name},
        )

    def layer_edits(self, removed: np.ndarray) -> dict[str, tuple]:
        """For every layer touched by removing units ``removed``: ``(layer, weight masks, new
        config)`` from its handler. What surgery slices and what the planner prices."""
        out: dict[str, tuple] = {}
        for node in self.graph.nodes:
            if node.node_index != 0 or not node.inputs:
                continue
            keep = self.keep_masks(node, removed)
            if not keep.changed:
                continue
            layer = self.graph.op(node.layer_name)
            handler = get_handler(layer)
            config = handler.new_config(self.graph.layer_config(node.layer_name), keep, layer)
            out[node.layer_name] = (layer, handler.weight_masks(layer, keep), config)
        return out

    def frozen_reasons(self) -> dict[str, str]:
        """For each layer whose output channels are all frozen, one reason why."""
        out: dict[str, str] = {}
        for node in self.graph.nodes:
            for ref in node.outputs:
                roots = self.tensor_roots.get(ref)
                if roots is not None and len(roots) and self._frozen[roots].all():
                    out.setdefault(node.layer_name, self.atoms.frozen_reason(int(roots[0])) or "")
        return out


def _positions_per_unit(
    unit_index: np.ndarray, group_of: np.ndarray, tensor_roots: np.ndarray, gi: int, size: int
) -> list[np.ndarray]:
    pos = np.flatnonzero(group_of[tensor_roots] == gi)
    units = unit_index[tensor_roots[pos]]
    order = np.argsort(units, kind="stable")
    bounds = np.searchsorted(units[order], np.arange(size + 1))
    return [pos[order[bounds[i] : bounds[i + 1]]] for i in range(size)]


def channel_groups(model: keras.Model) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (functional or Sequential)."""
    return DependencyGraph(model).groups
