"""``PruningCallback``: mask more units on a schedule while the user's own ``fit`` runs.

At the start of each pruning epoch (``start_epoch``, then every ``frequency``
epochs, and ``end_epoch``) the callback

1. reads the masked model (:func:`~tf_gpp.prune.masking.masked_view`) and
   rebuilds the model its masks stand for — masked units removed, current
   weights — so the importance scores exactly the network being trained;
2. scores it (``importance``) and lets the schedule choose more units
   (:func:`~tf_gpp.prune.pruner.plan_round`: by default a MACs/params target
   shrinking geometrically to ``target_*`` at ``end_epoch``);
3. writes the masks: masked units stay masked, coupled channels go together.

Training then goes on with the user's optimizer, loss, augmentation and
distribution strategy. Every epoch's logs get ``gpp_macs``, ``gpp_params``
and ``gpp_kept_units`` (of the model :func:`tf_gpp.strip` would build), so
``History`` and a ``TensorBoard`` callback listed after this one see them.
The masks are model weights: a masked model saved mid-training resumes
(``fit(..., initial_epoch=k)``) where it stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from tf_gpp.data.intake import as_dataset
from tf_gpp.errors import ArgumentError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.graph.model_graph import InputShapes
from tf_gpp.importance import DEFAULT_IMPORTANCE, Importance, get_importance
from tf_gpp.importance import serialize as serialize_importance
from tf_gpp.profile import input_shape_from_data
from tf_gpp.prune.masking import masked_view
from tf_gpp.prune.planner import Constraints
from tf_gpp.prune.pruner import make_constraints, plan_round, validate_targets
from tf_gpp.prune.schedules import Cost, PruningSchedule, get, resolve_target, serialize
from tf_gpp.surgery import rebuild

__all__ = ["PruningCallback"]


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgumentError(f"PruningCallback({name}={value!r}): give a whole number >= {low}")
    return value


@keras.saving.register_keras_serializable(package="tf_gpp")
class PruningCallback(keras.callbacks.Callback):
    """Prune a :func:`tf_gpp.prunable` model during ``fit`` (see the module docstring).

    Args:
        data: labelled data the importance scores on (any form ``model.fit`` takes; training
            images without augmentation at best). Optional for data-free importances.
        target_macs, target_params: final target reached at ``end_epoch``: a fraction of the
            unmasked model (in (0, 1]) or an absolute count.
        start_epoch: first pruning epoch (0-based; units are masked at its start).
        end_epoch: last pruning epoch (default: the last epoch of ``fit``).
        frequency: prune every ``frequency`` epochs from ``start_epoch`` (``end_epoch`` always).
        importance: registered name, ``{"class_name", "config"}`` dict or
            :class:`~tf_gpp.importance.Importance` (default
            :data:`~tf_gpp.importance.DEFAULT_IMPORTANCE`, ``"taylor"``; ``"gpp_lda"`` is the
            papers' discriminant utility).
        schedule: :mod:`tf_gpp.prune.schedules` object, registered name or dict; default ``Geometric()``
            (one geometric step per pruning epoch); ``Threshold(eta, eta_step)`` is the
            paper's per-group rule (it stops once a given target is met).
        constraints / round_to, min_channels, ignored_layers, max_pruning_ratio: structural
            constraints (``max_pruning_ratio``: the largest share of a layer's width that is masked).
        input_shape: input size for models with dynamic dimensions (default: the data's).
        verbose: 1 prints one line per pruning epoch.

    The callback works on the model ``fit`` trains, or on the masked model inside a
    :class:`~tf_gpp.PushModel`. Put it before ``TensorBoard`` in the callback list.
    """

    def __init__(
        self,
        data: Any = None,
        target_macs: float | None = None,
        target_params: float | None = None,
        start_epoch: int = 0,
        end_epoch: int | None = None,
        frequency: int = 1,
        importance: str | dict | Importance = DEFAULT_IMPORTANCE,
        schedule: str | dict | PruningSchedule | None = None,
        constraints: Constraints | None = None,
        *,
        round_to: int | None = None,
        min_channels: int | None = None,
        ignored_layers: Any = None,
        max_pruning_ratio: float | None = None,
        input_shape: InputShapes = None,
        batch_size: int = 64,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self.data = data
        self.target_macs = target_macs
        self.target_params = target_params
        self.start_epoch = _whole("start_epoch", start_epoch, 0)
        self.end_epoch = None if end_epoch is None else _whole("end_epoch", end_epoch, self.start_epoch)
        self.frequency = _whole("frequency", frequency, 1)
        self.importance = get_importance(importance)
        self.schedule = get(schedule)
        validate_targets(self.schedule, target_macs, target_params)
        # masks act on tensors: units inside a layer (attention heads) are left to compress/Pruner
        made = make_constraints(constraints, round_to, min_channels, ignored_layers, max_pruning_ratio)
        self.constraints = dataclasses.replace(made, internal_units=False)
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.verbose = verbose
        self.base: Cost | None = None
        self.target: Cost | None = None
        self._dataset: Any = None
        self._logs: dict[str, float] = {}

    # -- schedule ----------------------------------------------------------------------------------
    def pruning_epochs(self, epochs: int | None = None) -> list[int]:
        """The 0-based epochs at whose start units are masked."""
        end = self.end_epoch
        if end is None:
            if not epochs:
                raise ArgumentError("PruningCallback: give end_epoch= (fit's epochs are unknown here)")
            end = max(self.start_epoch, int(epochs) - 1)
        out = list(range(self.start_epoch, end + 1, self.frequency))
        if out[-1] != end:
            out.append(end)
        return out

    # -- Keras hooks -------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._epochs = self.pruning_epochs((self.params or {}).get("epochs"))
        view = masked_view(self.model)  # refuses a model without masks
        if self.data is not None:
            self._dataset = as_dataset(self.data, batch_size=self.batch_size, model=view.plain, what="data")
            if self.input_shape is None:
                self.input_shape = input_shape_from_data(view.plain, self._dataset)
        elif self.importance.requires_data:
            raise ArgumentError(f"PruningCallback: importance {self.importance!r} needs data=(x, y) or a dataset")
        view = masked_view(self.model, self.input_shape)
        params, macs = view.cost(set())
        self.base = Cost(params=params, macs=macs)
        # max_pruning_ratio: a share of the unmasked widths (rounds plan on the rebuilt slim model)
        self.constraints = dataclasses.replace(self.constraints, base_widths={}).with_base(view.dep)
        self.target = Cost(macs=resolve_target(self.target_macs, macs, "target_macs"),
                           params=resolve_target(self.target_params, params, "target_params"))
        self._record(view)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch in self._epochs:
            self.prune(self._epochs.index(epoch) + 1, len(self._epochs))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self._logs)

    # -- one round ---------------------------------------------------------------------------------
    def prune(self, round: int, rounds: int) -> int:
        """Mask the units of round ``round`` of ``rounds``; returns how many were added."""
        view = masked_view(self.model, self.input_shape)
        removed = view.removed()
        slim = rebuild(view.dep, removed)
        slim_dep = DependencyGraph(slim, input_shape=self.input_shape)
        plan = plan_round(slim, slim_dep, self._dataset, self.importance, self.schedule, self.constraints,
                          round=round, rounds=rounds, base=self.base, target=self.target)
        new = view.units_from(slim_dep, removed, plan) & view.maskable_units()
        if new:
            view.set_removed(removed | new)
        self._record(view)
        if self.verbose:
            print(f"[tf_gpp] pruning round {round}/{rounds}: +{len(new)} units masked, "
                  f"{self._logs['gpp_macs']:,.0f} MACs ({100 * self._logs['gpp_macs'] / self.base.macs:.1f}%), "
                  f"{self._logs['gpp_params']:,.0f} params, {self._logs['gpp_kept_units']:.0f} units kept")
        return len(new)

    def _record(self, view: Any) -> None:
        removed = view.removed()
        params, macs = view.cost(removed)
        kept = sum(g.size for g in view.dep.groups) - len(removed)
        self._logs = {"gpp_macs": float(macs), "gpp_params": float(params), "gpp_kept_units": float(kept)}

    # -- config ------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Everything but ``data`` (give it again to ``from_config``: ``{**config, "data": ...}``);
        importance and schedule as ``{"class_name": registered name, "config": ...}``.

        Raises:
            ArgumentError: the importance or schedule has no registered name (the message says
                how to register it)."""
        return {
            "target_macs": self.target_macs,
            "target_params": self.target_params,
            "start_epoch": self.start_epoch,
            "end_epoch": self.end_epoch,
            "frequency": self.frequency,
            "importance": serialize_importance(self.importance),
            "schedule": serialize(self.schedule),
            "round_to": self.constraints.round_to,
            "min_channels": self.constraints.min_channels,
            "ignored_layers": sorted(self.constraints.ignored_layers),
            "max_pruning_ratio": self.constraints.max_pruning_ratio,
            "input_shape": self.input_shape,
            "batch_size": self.batch_size,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruningCallback:
        """The callback of :meth:`get_config`: importance and schedule by their registered names
        (:func:`tf_gpp.importance.register_importance`,
        :func:`tf_gpp.prune.schedules.register_schedule`; configs naming the Python class load too)."""
        return cls(**config)
