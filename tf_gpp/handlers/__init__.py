"""Per-layer-type handlers in one registry (importing this registers them all)."""

from tf_gpp.handlers import (  # noqa: F401
    attention,
    conv,
    core,
    elementwise,
    merge,
    normalization,
    preprocessing,
    recurrent,
    reshaping,
)
from tf_gpp.handlers.common import IdentityHandler as IdentityLikeHandler
from tf_gpp.handlers.registry import (
    Keep,
    LayerHandler,
    NodeContext,
    OpaqueHandler,
    get_handler,
    is_supported,
    register_handler,
)

__all__ = [
    "IdentityLikeHandler",
    "Keep",
    "LayerHandler",
    "NodeContext",
    "OpaqueHandler",
    "get_handler",
    "is_supported",
    "register_handler",
]
