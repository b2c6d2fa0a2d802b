"""tf_gpp: Grow-Push-Prune for Keras 3 — structured channel pruning guided by
deep discriminants, Inception growing, and TFLite/LiteRT export.

Public entry points::

    tf_gpp.channel_groups(model)             # coupled, prunable channel groups
    tf_gpp.prune_channels(model, {layer: [channel indices]})  # -> new slim model
    tf_gpp.profile(model)                    # params and MACs per sample
"""

from tf_gpp.errors import (
    DataError,
    PruningRequestError,
    TfGppError,
    UnsupportedModelError,
)
from tf_gpp.graph import ChannelGroup, DependencyGraph, channel_groups
from tf_gpp.handlers import LayerHandler, register_handler
from tf_gpp.profile import Profile, profile
from tf_gpp.surgery import prune_channels

__version__ = "0.1.0"

__all__ = [
    "ChannelGroup",
    "DataError",
    "DependencyGraph",
    "LayerHandler",
    "Profile",
    "PruningRequestError",
    "TfGppError",
    "UnsupportedModelError",
    "channel_groups",
    "profile",
    "prune_channels",
    "register_handler",
]
