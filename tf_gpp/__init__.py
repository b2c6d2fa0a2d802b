"""tf_gpp: Grow-Push-Prune for Keras 3 — structured channel pruning guided by
deep discriminants, Inception growing, and TFLite/LiteRT export.

Public entry points::

    tf_gpp.channel_groups(model)             # coupled, prunable channel groups
    tf_gpp.prune_channels(model, {layer: [channel indices]})  # -> new slim model
    tf_gpp.profile(model)                    # params and MACs per sample
    tf_gpp.compress(model, train, val, target_macs=0.3)      # push + prune rounds
    tf_gpp.recalibrate_batchnorm(model, data)                 # BN moving stats re-estimated
    tf_gpp.PushModel(model) / tf_gpp.PushSchedule(...)        # push in model.fit
    gated = tf_gpp.prunable(model)                            # prune in model.fit:
    gated.fit(..., callbacks=[tf_gpp.PruningCallback(data=..., target_macs=0.3)])
    slim = tf_gpp.strip(gated)                                # physically slim model
    tf_gpp.Pruner(model).step(data, target_macs=0.5)          # one step, no training
    tf_gpp.grow(train, val, ...)                              # Inception growing
    tf_gpp.grow_push_prune(train, val, compress_kwargs=...)   # grow, then compress
    tf_gpp.convert.to_tflite(model, "m.tflite", quantization="int8", ...)
"""

from tf_gpp import convert, data, discriminant, grow, importance, push
from tf_gpp.errors import (
    ArgumentError,
    DataError,
    PruningRequestError,
    TfGppError,
    UnsupportedModelError,
)
from tf_gpp.gpp import GPPResult, grow_push_prune
from tf_gpp.graph import ChannelGroup, DependencyGraph, channel_groups
from tf_gpp.graph.flatten import flatten_model
from tf_gpp.grow import GrowResult
from tf_gpp.grow import grow as grow_network
from tf_gpp.handlers import LayerHandler, register_handler
from tf_gpp.profile import Profile, input_shape_from_data, profile
from tf_gpp.prune import (
    CompressConfig,
    CompressResult,
    Pruner,
    PruningCallback,
    compress,
    prunable,
    strip,
)
from tf_gpp.push import PushLoss, PushModel, PushSchedule
from tf_gpp.recalibrate import recalibrate_batchnorm
from tf_gpp.surgery import prune_channels
from tf_gpp.training import Trainer

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "ChannelGroup",
    "CompressConfig",
    "CompressResult",
    "DataError",
    "DependencyGraph",
    "GPPResult",
    "GrowResult",
    "LayerHandler",
    "Profile",
    "Pruner",
    "PruningCallback",
    "PruningRequestError",
    "PushLoss",
    "PushModel",
    "PushSchedule",
    "TfGppError",
    "Trainer",
    "UnsupportedModelError",
    "channel_groups",
    "compress",
    "convert",
    "data",
    "discriminant",
    "flatten_model",
    "grow",
    "grow_push_prune",
    "grow_network",
    "importance",
    "input_shape_from_data",
    "profile",
    "prunable",
    "prune_channels",
    "push",
    "recalibrate_batchnorm",
    "register_handler",
    "strip",
]
