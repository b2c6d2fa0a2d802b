"""Read a Keras model into a channel-dependency graph and group coupled channels."""

from tf_gpp.graph.dependency import ChannelGroup, DependencyGraph, channel_groups
from tf_gpp.graph.model_graph import ModelGraph, TensorRef

__all__ = ["ChannelGroup", "DependencyGraph", "ModelGraph", "TensorRef", "channel_groups"]
