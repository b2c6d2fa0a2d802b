"""``Pruner``: one pruning step — score, plan, rebuild, recalibrate BatchNorm. It never trains.

>>> pruner = Pruner(model, importance="gpp_lda", round_to=4)
>>> result = pruner.step((x, y), target_macs=0.5)      # straight to half the MACs
>>> result.model, result.plan, result.macs              # a new slim model; ``model`` is untouched

With a schedule the pruner goes in rounds, one per ``step`` (fine-tune ``result.model``
with your own ``fit`` between steps; the next step continues from it):

>>> pruner = Pruner(model)
>>> for _ in range(3):
...     result = pruner.step(data, target_macs=0.3, schedule=Geometric(rounds=3))
...     result.model.compile(...); result.model.fit(...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras

from tf_gpp.data.intake import as_dataset
from tf_gpp.errors import ArgumentError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.graph.model_graph import InputShapes
from tf_gpp.importance import DEFAULT_IMPORTANCE, Importance, get_importance
from tf_gpp.profile import input_shape_from_data
from tf_gpp.prune.planner import Constraints, estimate_cost, group_scores
from tf_gpp.prune.schedules import Cost, PruningSchedule, get, resolve_target
from tf_gpp.recalibrate import recalibrate_batchnorm
from tf_gpp.surgery import rebuild

__all__ = ["PruneResult", "Pruner", "make_constraints", "plan_round"]


@dataclass
class PruneResult:
    """The outcome of one :meth:`Pruner.step`.

    ``model``: the new slim model (BatchNorm re-estimated when data was given); ``plan``:
    ``{group index: unit indices}`` removed, indices of ``dep`` (the graph of the model the step
    started from); ``params``/``macs``: the slim model's cost (per sample), priced by
    :func:`tf_gpp.profile.price_graph` like :func:`tf_gpp.profile`."""

    model: keras.Model
    plan: dict[int, list[int]]
    params: int
    macs: int
    base_params: int
    base_macs: int
    round: int
    dep: DependencyGraph = field(repr=False)

    @property
    def removed_units(self) -> int:
        return sum(len(v) for v in self.plan.values())

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.base_macs if self.base_macs else 1.0

    @property
    def params_ratio(self) -> float:
        return self.params / self.base_params if self.base_params else 1.0


def make_constraints(
    constraints: Constraints | None,
    round_to: int | None = None,
    min_channels: int | None = None,
    ignored_layers: Any = None,
    max_pruning_ratio: float | None = None,
) -> Constraints:
    """A :class:`Constraints` from an instance or the keyword form (not both)."""
    kwargs = {k: v for k, v in (("round_to", round_to), ("min_channels", min_channels),
                                 ("ignored_layers", ignored_layers), ("max_pruning_ratio", max_pruning_ratio))
              if v is not None}
    if constraints is not None:
        if kwargs:
            raise ArgumentError(f"give constraints=Constraints(...) or {sorted(kwargs)}, not both")
        if not isinstance(constraints, Constraints):
            raise ArgumentError(f"constraints={constraints!r}: expected tf_gpp.prune.Constraints")
        return constraints
    if "ignored_layers" in kwargs:
        if isinstance(kwargs["ignored_layers"], str):
            kwargs["ignored_layers"] = [kwargs["ignored_layers"]]
        kwargs["ignored_layers"] = set(kwargs["ignored_layers"])
    return Constraints(**kwargs)


def plan_round(
    model: keras.Model,
    dep: DependencyGraph,
    data: Any,
    importance: Importance,
    schedule: PruningSchedule,
    constraints: Constraints,
    *,
    round: int,
    rounds: int,
    base: Cost,
    target: Cost,
) -> dict[int, list[int]]:
    """Score every group of ``dep`` (``model``'s graph) with ``importance`` and let ``schedule``
    choose this round's removals: the step :class:`Pruner` and the pruning callback share."""
    importance.prepare(model, dep, data if importance.requires_data else None)
    scores = group_scores(dep, importance)
    return schedule.plan(dep, scores, constraints, round=round, rounds=rounds, base=base, target=target)


def validate_targets(schedule: PruningSchedule, target_macs: Any, target_params: Any) -> None:
    if schedule.needs_target and target_macs is None and target_params is None:
        raise ArgumentError(
            f"{type(schedule).__name__} schedule needs target_macs= or target_params= (a fraction of the "
            "base model such as 0.3, or an absolute count)"
        )


class Pruner:
    """Structured pruning in steps: score (importance), plan (schedule), rebuild, recalibrate.

    Args:
        model: functional or Sequential Keras model; never modified.
        importance: a name of :func:`tf_gpp.importance.get_importance` or an ``Importance``.
        constraints: a :class:`~tf_gpp.prune.Constraints`, or the keywords ``round_to``,
            ``min_channels``, ``ignored_layers`` and ``max_pruning_ratio``. Its ``max_pruning_ratio`` is a share of the
            widths of the model of the first step, unless it holds the base model's already
            (``Constraints.with_base``: give those when continuing from a pruned model).
        input_shape: input size for models with dynamic dimensions (default: the data's).
        recalibrate_steps: batches over which BatchNorm statistics are re-estimated after each
            step (``0``: off, ``None``: all data).
        batch_size: batch size used when ``data`` is arrays.
        base: the cost targets are fractions of (default: ``model``'s, priced at the first
            step); give the original model's to continue a run from a pruned model.
        round: the steps already taken (a schedule's round ``round + 1`` comes next).

    ``pruner.model`` is the current model: the user's model before the first step, then the
    last step's ``result.model`` (train it between steps: the next step continues from it; a
    trained copy is handed back with :meth:`continue_from`).
    """

    def __init__(
        self,
        model: keras.Model,
        importance: str | Importance = DEFAULT_IMPORTANCE,
        constraints: Constraints | None = None,
        *,
        round_to: int | None = None,
        min_channels: int | None = None,
        ignored_layers: Any = None,
        max_pruning_ratio: float | None = None,
        input_shape: InputShapes = None,
        recalibrate_steps: int | None = 100,
        batch_size: int = 64,
        base: Cost | None = None,
        round: int = 0,
    ) -> None:
        if not isinstance(model, keras.Model):
            raise ArgumentError(f"Pruner needs a keras.Model, got {type(model).__name__}")
        if isinstance(round, bool) or not isinstance(round, int) or round < 0:
            raise ArgumentError(f"Pruner(round={round!r}): the steps already taken, a whole number >= 0")
        self.model = model
        self.importance = get_importance(importance)
        self.constraints = make_constraints(constraints, round_to, min_channels, ignored_layers, max_pruning_ratio)
        self.input_shape = input_shape
        if recalibrate_steps is not None and (isinstance(recalibrate_steps, bool) or not isinstance(
                recalibrate_steps, int) or recalibrate_steps < 0):
            raise ArgumentError(f"recalibrate_steps={recalibrate_steps!r}: a whole number >= 0 (0: off) or None")
        self.recalibrate_steps = recalibrate_steps
        self.batch_size = batch_size
        self.round = round
        self.base: Cost | None = base

    def continue_from(self, model: keras.Model, round: int | None = None) -> Pruner:
        """The next step prunes ``model`` (the last step's model after training outside the
        pruner, which never trains); ``round``: the steps taken so far (default: unchanged).
        Returns the pruner."""
        if not isinstance(model, keras.Model):
            raise ArgumentError(f"Pruner.continue_from needs a keras.Model, got {type(model).__name__}")
        if round is not None and (isinstance(round, bool) or not isinstance(round, int) or round < 0):
            raise ArgumentError(f"Pruner.continue_from(round={round!r}): a whole number >= 0")
        self.model = model
        self.round = self.round if round is None else round
        return self

    def step(
        self,
        data: Any = None,
        target_macs: float | None = None,
        target_params: float | None = None,
        schedule: str | dict | PruningSchedule | None = None,
    ) -> PruneResult:
        """Prune ``self.model`` once and return the slim model with its plan.

        Args:
            data: labelled data in any form ``model.fit`` accepts (needed by data-driven
                importances such as ``gpp_lda`` and for BatchNorm recalibration).
            target_macs, target_params: final target, a fraction of the model the pruner was
                built with (in (0, 1]) or an absolute count.
            schedule: how far this step goes (:mod:`tf_gpp.prune.schedules`); default
                ``Geometric()``: straight to the target in one step.
        """
        sched = get(schedule)
        validate_targets(sched, target_macs, target_params)
        ds = None
        if data is not None:
            ds = as_dataset(data, batch_size=self.batch_size, model=self.model, what="data")
        if self.input_shape is None and ds is not None:
            self.input_shape = input_shape_from_data(self.model, ds)
        dep = DependencyGraph(self.model, input_shape=self.input_shape)
        self.constraints = self.constraints.with_base(dep)  # max_pruning_ratio: of the first model's widths
        if self.base is None:
            params, macs = estimate_cost(dep, {})
            self.base = Cost(params=params, macs=macs)
        target = Cost(macs=resolve_target(target_macs, self.base.macs, "target_macs"),
                      params=resolve_target(target_params, self.base.params, "target_params"))
        round_ = self.round + 1
        plan = plan_round(self.model, dep, ds, self.importance, sched, self.constraints,
                          round=round_, rounds=1, base=self.base, target=target)
        slim = rebuild(dep, dep.removed_units(plan) if plan else set())
        if ds is not None and self.recalibrate_steps != 0:
            recalibrate_batchnorm(slim, ds, self.recalibrate_steps)
        params, macs = estimate_cost(dep, plan)
        self.model = slim
        self.round = round_
        return PruneResult(slim, plan, params, macs, self.base.params, self.base.macs, round_, dep)

    def __repr__(self) -> str:
        return (f"Pruner(model={self.model.name!r}, importance={self.importance!r}, "
                f"constraints={self.constraints!r}, round={self.round})")
