"""Read a Keras model into a channel-dependency graph and group coupled channels; write edited copies."""

from tf_gpp.graph.dependency import ChannelGroup, DependencyGraph, channel_groups
from tf_gpp.graph.edit import TensorRef
from tf_gpp.graph.model_graph import ModelGraph

__all__ = ["ChannelGroup", "DependencyGraph", "ModelGraph", "TensorRef", "channel_groups"]
