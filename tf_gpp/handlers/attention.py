"""MultiHeadAttention: the model dimension in and out, and whole heads.

* The query, key and value inputs are read by the ``query``/``key``/``value``
  projections (kernels ``(d_in, heads, key_dim|value_dim)``): removing an input
  channel removes one kernel row, exactly as for a Dense layer.
* The output channels are new channels made by the ``attention_output``
  projection (kernel ``(heads, value_dim, d_out)``): they can be pruned like Dense
  units; the rewritten layer gets an explicit ``output_shape``.
* The heads are units inside the layer (:meth:`NodeContext.new_units`): removing head
  ``h`` removes its slice of the query/key/value kernels and biases and its rows of the
  output kernel, and ``num_heads`` shrinks. The other heads compute exactly what they did
  (each head's softmax is its own), so it equals zeroing the head's output-kernel rows.
  Heads are frozen when the layer returns its per-head attention scores.
* The value dimensions are units too (dimension ``j`` of every head together, since
  ``value_dim`` is one number): it reaches the output only through ``kernel[:, j, :]`` of the
  output projection, so removing it equals zeroing those rows (exact). Key dimensions are
  not units: the scores are scaled by ``1/sqrt(key_dim)``, so fewer key dimensions would
  need rescaled query weights, which slicing does not do.

In a transformer the inputs and the output sit on the residual stream, so these
channels are coupled with every ``Add`` of the stream (and with every
LayerNormalization on it, which is frozen unless the approximate opt-in of
:mod:`tf_gpp.handlers.layernorm` is used). Attention masks and the attention
scores output are never pruned. ``use_gate=True`` and a multi-axis ``output_shape``
are left opaque. Pricing is in :mod:`tf_gpp.handlers.recurrent`.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from tf_gpp.handlers.recurrent import attention_macs
from tf_gpp.handlers.registry import Keep, LayerHandler, NodeContext, WeightMasks, register_handler

_POSITIONAL = ("query", "value", "key")
_PROJECTIONS = ("query", "key", "value")


def call_roles(arguments: list[int | str]) -> list[str]:
    """The argument name of each input of a call, from :attr:`NodeContext.arguments`
    (positional arguments 0-2 are ``query``, ``value``, ``key``)."""
    return [a if isinstance(a, str) else _POSITIONAL[a] if a < len(_POSITIONAL) else f"argument {a}"
            for a in arguments]


def weight_parts(layer: Any) -> dict[str, tuple[Any, str]]:
    """``{variable path: (variable, "query/kernel")}`` for the weights of an attention layer."""
    out = {}
    for v in layer.weights:
        parts = v.path.split("/")
        out[v.path] = (v, "/".join(parts[-2:]))
    return out


def _value_dim(config: dict) -> int:
    return int(config.get("value_dim") or config["key_dim"])


# each internal unit set: (axis of the value-side projections' kernel, of the output kernel)
_UNIT_AXES = {"heads": (1, 0), "value_dims": (2, 1)}


def _output_width(config: dict) -> bool:
    """Whether ``output_shape`` is unset or one axis (the output is ``(..., d_out)``)."""
    shape = config.get("output_shape")
    return shape is None or isinstance(shape, int) or (isinstance(shape, list | tuple) and len(shape) == 1)


# Roles of the inputs of each attention layer's calls, read at tracing time (weight masks
# and pricing see only shapes in input order).
_ROLES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


@register_handler(keras.layers.MultiHeadAttention)
class MultiHeadAttentionHandler(LayerHandler):
    """Query/key/value input channels and the output channels of ``MultiHeadAttention``."""

    def propagate(self, ctx: NodeContext) -> list[np.ndarray]:
        if ctx.config.get("use_gate"):
            return ctx.freeze_all(ctx.reason("has a gate (use_gate=True), which tf_gpp does not slice"))
        if not _output_width(ctx.config):
            return ctx.freeze_all(ctx.reason("has a multi-axis output_shape"))
        roles = call_roles(ctx.arguments)
        if len(roles) != len(ctx.in_atoms) or not {"query", "value"} <= set(roles):
            return ctx.freeze_all(ctx.reason("is called with inputs tf_gpp cannot attribute to query/key/value"))
        seen = _ROLES.get(ctx.layer)
        if seen is not None and seen != roles:
            return ctx.freeze_all(ctx.reason("is shared between calls with different arguments"))
        _ROLES[ctx.layer] = roles
        for role, atoms in zip(roles, ctx.in_atoms, strict=True):
            if role not in _PROJECTIONS:
                ctx.freeze(atoms, ctx.reason(f"reads '{role}' as a mask"))
        ctx.new_units("heads", int(ctx.config["num_heads"]),
                      frozen=ctx.reason("returns per-head attention scores") if len(ctx.out_shapes) > 1 else None)
        ctx.new_units("value_dims", _value_dim(ctx.config))
        width = ctx.out_shapes[0][-1]
        outs = [ctx.new_atoms(int(width) if width is not None else 0)]
        for shape in ctx.out_shapes[1:]:  # return_attention_scores=True
            n = int(shape[-1]) if shape and shape[-1] is not None else 0
            outs.append(ctx.new_atoms(n, frozen=ctx.reason("returns attention scores")))
        return outs

    def new_config(self, config: dict, keep: Keep, layer: Any) -> dict:
        config["output_shape"] = int(keep.outputs[0].sum())
        if "heads" in keep.internal:
            config["num_heads"] = int(keep.internal["heads"].sum())
        if "value_dims" in keep.internal:
            config["value_dim"] = int(keep.internal["value_dims"].sum())
        return config

    def weight_masks(self, layer: Any, keep: Keep) -> WeightMasks:
        roles = _ROLES.get(layer, list(_POSITIONAL[: len(keep.inputs)]))
        by_role = {r: m for r, m in zip(roles, keep.inputs, strict=False) if r in _PROJECTIONS}
        by_role.setdefault("key", by_role["value"])
        out_mask = keep.outputs[0]
        heads = keep.internal.get("heads")
        dims = keep.internal.get("value_dims")
        masks: WeightMasks = {}
        for path, (_, part) in weight_parts(layer).items():
            sub, name = part.split("/")
            if sub in _PROJECTIONS:  # kernel (d_in, heads, dim), bias (heads, dim)
                k = 1 if name == "kernel" else 0  # the heads axis
                masks[path] = {0: by_role[sub]} if name == "kernel" else {}
                if heads is not None:
                    masks[path][k] = heads
                if dims is not None and sub == "value":
                    masks[path][k + 1] = dims
            elif sub == "attention_output":  # kernel (heads, value_dim, d_out), bias (d_out,)
                masks[path] = {-1: out_mask} if name == "kernel" else {0: out_mask}
                if heads is not None and name == "kernel":
                    masks[path][0] = heads
                if dims is not None and name == "kernel":
                    masks[path][1] = dims
        return masks

    def unit_l1(self, layer: Any, key: str) -> np.ndarray | None:
        """Sum of |kernel| entries making each head (query, key, value and output kernels) or
        each value dimension (value and output kernels)."""
        if key not in _UNIT_AXES:
            return None
        in_axis, out_axis = _UNIT_AXES[key]
        subs = (*_PROJECTIONS, "attention_output") if key == "heads" else ("value", "attention_output")
        out = 0.0
        for v, part in weight_parts(layer).values():
            sub, name = part.split("/")
            if name == "kernel" and sub in subs:
                k = np.moveaxis(np.abs(np.asarray(v)), out_axis if sub == "attention_output" else in_axis, 0)
                out = out + k.reshape(k.shape[0], -1).sum(axis=1)
        return out

    def unit_probe(self, layer: Any, key: str) -> tuple[Any, int] | None:
        """The output kernel ``(heads, value_dim, d_out)``: the output is a sum over heads and
        value dimensions of ``context[h, j] * kernel[h, j]`` plus a bias, linear in each slice."""
        if key not in _UNIT_AXES:
            return None
        kernel = next(v for v, part in weight_parts(layer).values() if part == "attention_output/kernel")
        return kernel, _UNIT_AXES[key][1]

    def filter_l1(self, layer: Any) -> np.ndarray | None:
        """Sum of |attention_output kernel| entries making each output channel."""
        for v, part in weight_parts(layer).values():
            if part == "attention_output/kernel":
                k = np.abs(np.asarray(v))
                return k.reshape(-1, k.shape[-1]).sum(axis=0)
        return None

    def macs(self, layer, config, in_shapes, out_shapes) -> int | None:
        traced = layer in _ROLES
        # Untraced (profile): query and value are the first two inputs, the key's width is
        # the key kernel's; traced: the key is the value unless passed.
        roles = _ROLES[layer] if traced else ["query", "value"]
        shapes = dict(zip(roles, in_shapes, strict=False))
        if "query" not in shapes or "value" not in shapes:
            return None
        key = shapes.get("key")
        if key is None:
            rows = [v.shape[0] for v, part in weight_parts(layer).values() if part == "key/kernel"]
            width = rows[0] if rows and not traced else shapes["value"][-1]
            key = (*shapes["value"][:-1], width)
        heads = int(config["num_heads"])
        key_dim = int(config["key_dim"])
        value_dim = int(config.get("value_dim") or key_dim)
        return attention_macs(shapes["query"], key, shapes["value"], out_shapes[0], heads, key_dim, value_dim)
