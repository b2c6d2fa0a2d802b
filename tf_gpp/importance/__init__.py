"""Channel importance criteria behind one interface: ``Importance(dep, group) -> scores``."""

from __future__ import annotations

from tf_gpp.errors import PruningRequestError
from tf_gpp.importance.base import Importance
from tf_gpp.importance.gpp import GPPUtility
from tf_gpp.importance.magnitude import BNScale, L1Norm, RandomImportance
from tf_gpp.importance.taylor import Taylor

_BY_NAME = {
    "gpp": lambda: GPPUtility(),
    "gpp_lda": lambda: GPPUtility(utility="lda"),
    "gpp_linear": lambda: GPPUtility(trace="linear"),
    "l1": L1Norm,
    "bn_scale": BNScale,
    "taylor": Taylor,
    "random": RandomImportance,
}


def get_importance(spec: str | Importance) -> Importance:
    """An importance from its name (``gpp``, ``gpp_lda``, ``gpp_linear``, ``l1``,
    ``bn_scale``, ``taylor``, ``random``) or an instance (returned as is)."""
    if isinstance(spec, Importance):
        return spec
    if spec not in _BY_NAME:
        raise PruningRequestError(f"unknown importance {spec!r}; choose one of {sorted(_BY_NAME)} or pass an Importance")
    return _BY_NAME[spec]()


__all__ = ["BNScale", "GPPUtility", "Importance", "L1Norm", "RandomImportance", "Taylor", "get_importance"]
