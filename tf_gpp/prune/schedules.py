"""Pruning schedules: how far one pruning round goes.

A schedule turns the scores of one round into a plan (``{group index: unit
indices}``) for the model of that round. Two are built in:

* :class:`Geometric` — a cost target per round that shrinks geometrically from
  the base model to the final target: ``base * (target / base) ** (r / rounds)``
  (global ranking, :func:`~tf_gpp.prune.planner.plan_global`);
* :class:`Threshold` — the CVIU paper's per-group rule (Eq. 13): remove units scoring below
  ``eta * std`` of their group's non-zero scores, ``eta`` raised by ``eta_step`` every round
  (:func:`~tf_gpp.prune.planner.plan_threshold`); the paper's sequence 0.1, 0.2, ... is
  ``Threshold(eta=0.1, eta_step=0.1)``.

Schedules are small serialisable objects (``get_config``/``from_config``), named by the
registry: :func:`register_schedule` adds a name, :func:`get` builds one from a name, a config
dict or an instance, and :func:`serialize` writes the registered name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tf_gpp.errors import ArgumentError, PruningRequestError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.profile import Cost
from tf_gpp.prune.planner import Constraints, estimate_cost, plan_global, plan_threshold

__all__ = ["Cost", "Geometric", "PerLayerThreshold", "PruningSchedule", "Threshold", "get", "names", "register_schedule",
           "registered_name", "resolve_target", "serialize", "unregister_schedule"]


def resolve_target(target: float | None, base: int, name: str) -> int | None:
    """A target given as a fraction of ``base`` (in (0, 1]) or an absolute count (> 1) -> count."""
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, int | float | np.number) or not np.isfinite(target) \
            or target <= 0:
        raise PruningRequestError(f"{name}={target!r}: give a fraction of the base model in (0, 1] or an "
                                  "absolute count > 1")
    if target > 1 and target != int(target):
        raise PruningRequestError(
            f"{name}={target}: values above 1 are absolute counts and must be whole numbers; "
            "for a fraction of the base model give a value in (0, 1]"
        )
    return int(target * base) if target <= 1 else int(target)


class PruningSchedule:
    """Base class: ``plan(...)`` chooses the units one round removes."""

    name = "schedule"
    needs_target = False

    def plan(
        self,
        dep: DependencyGraph,
        scores: dict[int, np.ndarray],
        constraints: Constraints,
        *,
        round: int,
        rounds: int,
        base: Cost,
        target: Cost,
    ) -> dict[int, list[int]]:
        """The plan of round ``round`` (1-based) of ``rounds`` on ``dep``'s model.

        ``base``: cost of the unpruned model; ``target``: final absolute cost target."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> PruningSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


class Geometric(PruningSchedule):
    """Cost target of round ``r``: ``base * (target / base) ** (min(r, rounds) / rounds)``.

    ``rounds=None`` takes the caller's number of rounds (one for a single
    :meth:`Pruner.step <tf_gpp.Pruner.step>`, the pruning epochs for a
    :class:`~tf_gpp.PruningCallback`). Units are ranked globally
    (:func:`~tf_gpp.prune.planner.plan_global`)."""

    name = "geometric"
    needs_target = True
    normalize = "mean"  # how plan_global compares groups

    def __init__(self, rounds: int | None = None) -> None:
        if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
            raise ArgumentError(f"Geometric(rounds={rounds!r}): give a whole number >= 1, or None")
        self.rounds = rounds

    def round_target(self, round: int, rounds: int, base: Cost, target: Cost) -> Cost:
        """The absolute cost target of round ``round`` (1-based)."""
        n = self.rounds or rounds
        frac = min(max(round, 0), n) / n

        def at(b: int | None, t: int | None) -> int | None:
            if t is None or b is None:
                return None
            return t if frac >= 1 else int(b * (t / b) ** frac)

        return Cost(params=at(base.params, target.params), macs=at(base.macs, target.macs))

    def plan(self, dep, scores, constraints, *, round, rounds, base, target):  # noqa: D102
        if target.macs is None and target.params is None:
            raise PruningRequestError(f"the {type(self).__name__} schedule needs target_macs or target_params (e.g. 0.3)")
        t = self.round_target(round, rounds, base, target)
        params, macs = estimate_cost(dep, {})
        if (t.macs is None or macs <= t.macs) and (t.params is None or params <= t.params):
            return {}  # this round's target is met already
        return plan_global(dep, scores, constraints, target_macs=t.macs, target_params=t.params,
                           normalize=self.normalize)

    def get_config(self) -> dict:
        return {"rounds": self.rounds}


class PerLayerThreshold(Geometric):
    """The CVIU per-group rule ``score < eta * std`` (Eq. 13; :class:`Threshold`), with ``eta``
    chosen in each round, one value for every group, as the smallest that meets
    :class:`Geometric`'s cost target of the round. It reaches a MACs/params target in
    ``rounds`` like :class:`Geometric`, so the two compare at equal cost; only the ranking
    differs: each group's scores divided by the spread of its non-zero scores (the paper's
    per-layer threshold) instead of by their mean (``plan_global(normalize="std")``)."""

    name = "per_layer"
    normalize = "std"


class Threshold(PruningSchedule):
    """The CVIU rule (Eq. 13): per group, remove units scoring below ``eta * std`` of the group's
    non-zero scores, with ``eta + (r - 1) * eta_step`` in round ``r`` (the paper raises eta
    0.1, 0.2, ...: ``Threshold(0.1, 0.1)``; the defaults here, 0.5 and 0.25, are ours). A cost
    target, when given, stops pruning once the model meets it."""

    name = "threshold"

    def __init__(self, eta: float = 0.5, eta_step: float = 0.25) -> None:
        for k, v in (("eta", eta), ("eta_step", eta_step)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise ArgumentError(f"Threshold({k}={v!r}): give a finite number >= 0")
        self.eta = float(eta)
        self.eta_step = float(eta_step)

    def eta_at(self, round: int) -> float:
        return self.eta + (max(round, 1) - 1) * self.eta_step

    def plan(self, dep, scores, constraints, *, round, rounds, base, target):  # noqa: D102
        if target.macs is not None or target.params is not None:
            params, macs = estimate_cost(dep, {})
            if target.reached_by(Cost(params=params, macs=macs)):
                return {}
        return plan_threshold(dep, scores, self.eta_at(round), constraints)

    def get_config(self) -> dict:
        return {"eta": self.eta, "eta_step": self.eta_step}


_BY_NAME: dict[str, type[PruningSchedule]] = {}


def register_schedule(name: str, cls: type[PruningSchedule] | None = None, *, overwrite: bool = False) -> Any:
    """Make ``name`` stand for the :class:`PruningSchedule` subclass ``cls`` wherever a schedule
    is named or serialized (:func:`get`, :func:`serialize`, ``PruningCallback(schedule=name)``
    and its config). Without ``cls`` it is a class decorator: ``@register_schedule("mine")``.
    ``cls.from_config(get_config())`` must restore an instance."""
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"register_schedule: name={name!r}: give a non-empty string")
    if cls is None:
        def decorate(c: type[PruningSchedule]) -> type[PruningSchedule]:
            register_schedule(name, c, overwrite=overwrite)
            return c

        return decorate
    if not (isinstance(cls, type) and issubclass(cls, PruningSchedule)):
        raise ArgumentError(f"register_schedule({name!r}): {cls!r} is not a PruningSchedule subclass")
    if name in _BY_NAME and not overwrite:
        raise ArgumentError(f"schedule {name!r} is already registered; pass overwrite=True to replace it")
    _BY_NAME[name] = cls
    return cls


def unregister_schedule(name: str) -> None:
    """Remove a registered name (unknown names are ignored)."""
    _BY_NAME.pop(name, None)


def names() -> list[str]:
    """The registered schedule names, sorted."""
    return sorted(_BY_NAME)


def _class_of(name: Any) -> type[PruningSchedule] | None:
    """The class a registered name stands for (case-insensitive), else (configs written before
    names were recorded) a registered class of that Python class name."""
    if not isinstance(name, str):
        return None
    for key in (name, name.lower()):
        if key in _BY_NAME:
            return _BY_NAME[key]
    return next((c for c in _BY_NAME.values() if c.__name__ == name), None)


def get(identifier: str | dict | PruningSchedule | None) -> PruningSchedule:
    """A schedule from a registered name (``"geometric"``, ``"threshold"``, ``"per_layer"``, or
    one of :func:`register_schedule`), a ``{"class_name", "config"}`` dict (as :func:`serialize`
    gives), an instance (returned as is) or ``None`` (``Geometric()``)."""
    if identifier is None:
        return Geometric()
    if isinstance(identifier, PruningSchedule):
        return identifier
    name, config = identifier, {}
    if isinstance(identifier, dict):
        name, config = identifier.get("class_name"), dict(identifier.get("config") or {})
    cls = _class_of(name)
    if cls is None:
        raise ArgumentError(
            f"unknown pruning schedule {identifier!r}; choose one of {names()}, a "
            "{'class_name': ..., 'config': ...} dict or a tf_gpp.prune.schedules.PruningSchedule "
            "(tf_gpp.prune.schedules.register_schedule adds a name)"
        )
    return cls.from_config(config)


def registered_name(schedule: PruningSchedule) -> str:
    """The first name ``schedule``'s class is registered under.

    Raises:
        ArgumentError: the class is not registered (the message gives the call that fixes it).
    """
    klass = type(schedule)
    name = next((n for n, c in _BY_NAME.items() if c is klass), None)
    if name is None:
        raise ArgumentError(
            f"schedule {schedule!r} has no registered name, so a config cannot name it; call "
            f"tf_gpp.prune.schedules.register_schedule('{klass.__name__.lower()}', {klass.__name__}) first")
    return name


def serialize(schedule: PruningSchedule) -> dict[str, Any]:
    """``{"class_name": registered name, "config": get_config()}``: the inverse of :func:`get`."""
    return {"class_name": registered_name(schedule), "config": schedule.get_config()}


for _name, _cls in (("geometric", Geometric), ("threshold", Threshold), ("per_layer", PerLayerThreshold)):
    register_schedule(_name, _cls)
