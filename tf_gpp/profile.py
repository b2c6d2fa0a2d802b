"""Parameters and multiply-accumulates (MACs) per sample, in total and per layer.

MACs count the multiply-accumulates of weighted layers (Dense, convolutions of
every kind), per sample, as each handler defines them; normalization,
activations, pooling and merges count 0 (they are cheap and usually fused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from tf_gpp.graph.model_graph import ModelGraph
from tf_gpp.handlers import get_handler


@dataclass
class LayerProfile:
    name: str
    class_name: str
    params: int
    macs: int
    output_shape: tuple


@dataclass
class Profile:
    """Model cost: ``params`` (all weights), ``macs`` per sample, and per-layer rows."""

    params: int
    macs: int
    layers: list[LayerProfile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "macs": self.macs,
            "layers": [vars(r) | {"output_shape": list(r.output_shape)} for r in self.layers],
        }

    def table(self, all_layers: bool = False) -> str:
        """A readable per-layer table (layers with params or MACs unless ``all_layers``)."""
        rows = [r for r in self.layers if all_layers or r.params or r.macs]
        w = max([len(r.name) for r in rows] + [5])
        c = max([len(r.class_name) for r in rows] + [5])
        lines = [
            f"{'layer':<{w}}  {'type':<{c}}  {'output':<20} {'params':>12} {'MACs':>15} {'MACs %':>7}",
            "-" * (w + c + 62),
        ]
        for r in rows:
            share = 100.0 * r.macs / self.macs if self.macs else 0.0
            shape = "x".join("?" if d is None else str(d) for d in r.output_shape[1:])
            lines.append(
                f"{r.name:<{w}}  {r.class_name:<{c}}  {shape:<20} {r.params:>12,} {r.macs:>15,} {share:>6.1f}%"
            )
        lines.append("-" * (w + c + 62))
        lines.append(f"{'total':<{w}}  {'':<{c}}  {'':<20} {self.params:>12,} {self.macs:>15,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def profile(model: keras.Model) -> Profile:
    """Count parameters and MACs per sample of a functional or Sequential model."""
    g = ModelGraph(model)
    rows: dict[str, LayerProfile] = {}
    for node in g.nodes:
        op = g.op(node.layer_name)
        in_shapes, out_shapes = g.node_shapes(node)
        config = g.layer_configs[node.layer_name]["config"]
        macs = int(get_handler(op).macs(op, config, in_shapes, out_shapes)) if node.inputs else 0
        if node.layer_name in rows:  # shared layer: every call costs
            rows[node.layer_name].macs += macs
            continue
        params = int(op.count_params()) if getattr(op, "weights", None) else 0
        shape = tuple(out_shapes[0]) if out_shapes else ()
        rows[node.layer_name] = LayerProfile(node.layer_name, type(op).__name__, params, macs, shape)
    layers = list(rows.values())
    return Profile(params=sum(r.params for r in layers), macs=sum(r.macs for r in layers), layers=layers)
