"""Channel importance criteria behind one interface: ``Importance(dep, group) -> scores``.

A public registry maps names to factories, like Keras' ``get(identifier)``::

    tf_gpp.importance.get("gpp_lda")            # an instance from its name
    tf_gpp.importance.get({"class_name": "l1", "config": {}})
    tf_gpp.importance.register_importance("mine", MyImportance)   # then importance="mine"
    tf_gpp.importance.names()                    # what the CLI and compress accept
"""

from __future__ import annotations

from collections.abc import Callable

from tf_gpp.errors import ArgumentError, PruningRequestError
from tf_gpp.importance.base import Importance
from tf_gpp.importance.cviu import CVIUUtility
from tf_gpp.importance.gpp import GPPUtility
from tf_gpp.importance.magnitude import BNScale, L1Norm, RandomImportance
from tf_gpp.importance.taylor import Taylor

_REGISTRY: dict[str, Callable[..., Importance]] = {}

#: The importance ``compress``, :class:`tf_gpp.Pruner` and :class:`tf_gpp.PruningCallback` use
#: when none is named: first-order Taylor, the best measured (docs/method.md §9); the papers'
#: discriminant utility is ``"gpp_lda"``.
DEFAULT_IMPORTANCE = "taylor"


def register_importance(name: str, factory: Callable[..., Importance], *, overwrite: bool = False) -> None:
    """Make ``name`` stand for ``factory`` (an :class:`Importance` subclass or a function
    returning one) wherever an importance is named: ``compress(importance=name)``,
    :class:`tf_gpp.Pruner`, :class:`tf_gpp.PruningCallback`, ``tf-gpp compress --importance``."""
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"register_importance: name={name!r}: give a non-empty string")
    if not callable(factory):
        raise ArgumentError(f"register_importance({name!r}): factory {factory!r} is not callable")
    if name in _REGISTRY and not overwrite:
        raise ArgumentError(f"importance {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def unregister_importance(name: str) -> None:
    """Remove a registered name (unknown names are ignored)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """The registered importance names, sorted."""
    return sorted(_REGISTRY)


def get(identifier: str | dict | Importance) -> Importance:
    """An importance from a registered name, a ``{"class_name": name, "config": {...}}`` dict
    (``config`` passed to the factory) or an instance (returned as is).

    Raises:
        PruningRequestError: an unknown name, listing the registered ones.
    """
    if isinstance(identifier, Importance):
        return identifier
    config: dict = {}
    name = identifier
    if isinstance(identifier, dict):
        name, config = identifier.get("class_name"), dict(identifier.get("config") or {})
    if not isinstance(name, str) or name not in _REGISTRY:
        raise PruningRequestError(
            f"unknown importance {name!r}; choose one of {names()} or pass an Importance "
            "(tf_gpp.importance.register_importance adds a name)")
    return _REGISTRY[name](**config)


def get_importance(spec: str | dict | Importance) -> Importance:
    """Alias of :func:`get`."""
    return get(spec)


for _name, _factory in {
    "gpp": CVIUUtility,
    "gpp_grad": GPPUtility,
    "gpp_lda": lambda **kw: GPPUtility(**{"utility": "lda", **kw}),
    "gpp_linear": lambda **kw: GPPUtility(**{"trace": "linear", **kw}),
    "l1": L1Norm,
    "bn_scale": BNScale,
    "taylor": Taylor,
    "random": RandomImportance,
}.items():
    register_importance(_name, _factory)

__all__ = [
    "BNScale",
    "CVIUUtility",
    "GPPUtility",
    "Importance",
    "L1Norm",
    "RandomImportance",
    "Taylor",
    "get",
    "get_importance",
    "names",
    "register_importance",
    "unregister_importance",
]
