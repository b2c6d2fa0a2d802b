"""Channel importance criteria behind one interface: ``Importance(dep, group) -> scores``.

A public registry maps names to factories, in the manner of Keras' ``get(identifier)`` and
``serialize``::

    tf_gpp.importance.get("gpp_lda")            # an instance from its name
    tf_gpp.importance.get({"class_name": "l1", "config": {}})
    tf_gpp.importance.register_importance("mine", MyImportance)   # then importance="mine"
    tf_gpp.importance.serialize(imp)             # {"class_name": "mine", "config": {...}}
    tf_gpp.importance.names()                    # what the CLI and compress accept

Configs name an importance by its registered name, so a criterion added with
:func:`register_importance` survives ``PruningCallback.get_config()``/``from_config()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tf_gpp.errors import ArgumentError, PruningRequestError
from tf_gpp.importance.base import Importance
from tf_gpp.importance.cviu import CVIUUtility
from tf_gpp.importance.gpp import GPPUtility
from tf_gpp.importance.magnitude import BNScale, L1Norm, RandomImportance
from tf_gpp.importance.taylor import Taylor

_REGISTRY: dict[str, Callable[..., Importance]] = {}
_TAG = "_tf_gpp_registered_name"  # set by get() on the instances it builds from a name

#: The importance ``compress``, :class:`tf_gpp.Pruner` and :class:`tf_gpp.PruningCallback` use
#: when none is named: first-order Taylor, the best measured (docs/method.md §9); the papers'
#: discriminant utility is ``"gpp_lda"``.
DEFAULT_IMPORTANCE = "taylor"


def register_importance(name: str, factory: Callable[..., Importance] | None = None, *,
                        overwrite: bool = False) -> Any:
    """Make ``name`` stand for ``factory`` (an :class:`Importance` subclass or a function
    returning one) wherever an importance is named: ``compress(importance=name)``,
    :class:`tf_gpp.Pruner`, :class:`tf_gpp.PruningCallback` and its config,
    ``tf-gpp compress --import MODULE --importance name``.

    Without ``factory`` it is a class decorator: ``@register_importance("mine")``.
    A factory is called with the instance's ``get_config()`` to restore it."""
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"register_importance: name={name!r}: give a non-empty string")
    if factory is None:
        def decorate(f: Callable[..., Importance]) -> Callable[..., Importance]:
            register_importance(name, f, overwrite=overwrite)
            return f

        return decorate
    if not callable(factory):
        raise ArgumentError(f"register_importance({name!r}): factory {factory!r} is not callable")
    if isinstance(factory, type) and not issubclass(factory, Importance):
        raise ArgumentError(f"register_importance({name!r}): {factory.__name__} is not a "
                            "tf_gpp.importance.Importance subclass")
    if name in _REGISTRY and not overwrite:
        raise ArgumentError(f"importance {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory
    return factory


def unregister_importance(name: str) -> None:
    """Remove a registered name (unknown names are ignored)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """The registered importance names, sorted."""
    return sorted(_REGISTRY)


def _factory_of(class_name: Any) -> tuple[str, Callable[..., Importance]] | None:
    """The registered name and factory of ``class_name``: a registered name, else (configs
    written before names were recorded) the Python class name of a registered class."""
    if not isinstance(class_name, str):
        return None
    if class_name in _REGISTRY:
        return class_name, _REGISTRY[class_name]
    return next(((n, f) for n, f in _REGISTRY.items() if isinstance(f, type) and f.__name__ == class_name), None)


def get(identifier: str | dict | Importance) -> Importance:
    """An importance from a registered name, a ``{"class_name": name, "config": {...}}`` dict
    (as :func:`serialize` gives; ``config`` passed to the factory) or an instance (returned as is).

    Raises:
        PruningRequestError: an unknown name, listing the registered ones.
    """
    if isinstance(identifier, Importance):
        return identifier
    config: dict = {}
    name = identifier
    if isinstance(identifier, dict):
        name, config = identifier.get("class_name"), dict(identifier.get("config") or {})
    found = _factory_of(name)
    if found is None:
        raise PruningRequestError(
            f"unknown importance {name!r}; choose one of {names()} or pass an Importance "
            "(tf_gpp.importance.register_importance adds a name; on the command line, --import the "
            "module that registers it)")
    name, factory = found
    is_class = isinstance(factory, type) and issubclass(factory, Importance)
    imp = factory.from_config(config) if is_class else factory(**config)
    if not isinstance(imp, Importance):
        raise ArgumentError(f"importance {name!r}: its factory returned {type(imp).__name__}, not an Importance")
    try:
        setattr(imp, _TAG, name)
    except AttributeError:  # slots or a frozen class: the class lookup of registered_name serves
        pass
    return imp


def get_importance(spec: str | dict | Importance) -> Importance:
    """Alias of :func:`get`."""
    return get(spec)


def registered_name(importance: Importance) -> str:
    """The name ``importance`` is registered under: the name :func:`get` built it from, else
    the first name whose factory is its class.

    Raises:
        ArgumentError: neither is registered (the message gives the call that fixes it).
    """
    tagged = getattr(importance, _TAG, None)
    if tagged in _REGISTRY:
        return tagged
    klass = type(importance)
    name = next((n for n, f in _REGISTRY.items() if f is klass), None)
    if name is None:
        raise ArgumentError(
            f"importance {importance!r} has no registered name, so a config cannot name it; call "
            f"tf_gpp.importance.register_importance('{klass.__name__.lower()}', {klass.__name__}) first")
    return name


def serialize(importance: Importance) -> dict[str, Any]:
    """``{"class_name": registered name, "config": get_config()}``: the inverse of :func:`get`."""
    return {"class_name": registered_name(importance), "config": importance.get_config()}


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
    "DEFAULT_IMPORTANCE",
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
    "registered_name",
    "serialize",
    "unregister_importance",
]
