"""``CompressConfig``: every option of :func:`tf_gpp.compress`, validated in one place.

``compress(model, train, val, **options)``, ``compress(..., config=CompressConfig(...))``,
the ``tf-gpp compress``/``grow`` commands and :func:`tf_gpp.grow_push_prune`'s
``compress_kwargs`` all build this object and call :meth:`CompressConfig.validate`, so an
option is checked once, with one message, before any data is read or anything trains.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from tf_gpp.errors import ArgumentError, PruningRequestError
from tf_gpp.importance import DEFAULT_IMPORTANCE, Importance, get_importance
from tf_gpp.io import recipe_json
from tf_gpp.prune.planner import Constraints
from tf_gpp.prune.schedules import (
    Geometric,
    PerLayerThreshold,
    PruningSchedule,
    Threshold,
    resolve_target,
)
from tf_gpp.push import PushLoss
from tf_gpp.training import LR_SCHEDULES, OptimizerLike, serialize_optimizer

__all__ = ["STRATEGIES", "CompressConfig"]

STRATEGIES = ("global", "per_layer", "threshold")
#: the optimizer compress trains with by default (the recipe was measured with it)
DEFAULT_OPTIMIZER = "adam"
#: options that change nothing compress computes: a resumed run may differ in them
_NOT_IN_RECIPE = frozenset({"checkpoint_dir", "log_dir", "verbose", "callbacks"})
#: the largest share of a layer's width compress removes by default: every layer keeps 10% of its
#: width (measured: docs/method.md §10a); 1 lifts the limit
DEFAULT_MAX_PRUNING_RATIO = 0.9
#: options added after checkpoints were first written, at the values runs had before them (no
#: limit on a layer's share): an older checkpoint's recipe is completed with these
_ADDED_LATER = {"optimizer": DEFAULT_OPTIMIZER, "max_pruning_ratio": 1.0}
#: the last round's fine-tuning, by default, in multiples of ``finetune_epochs``: its model is the
#: one returned, and 4x measured best of the recovery recipes (docs/method.md, issue 22)
FINAL_FINETUNE_FACTOR = 4
#: the share of each push-training fit over which the push weights ramp from 0 to their targets
#: (per optimizer step, :class:`~tf_gpp.push.PushSchedule`'s ``warmup_steps``)
PUSH_WARMUP_SHARE = 0.5


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value >= low


@dataclass
class CompressConfig:
    """The options of :func:`tf_gpp.compress` (documented there), with their defaults."""

    validation_split: float = 0.0
    output: str | None = None
    target_macs: float | None = None
    target_params: float | None = None
    max_accuracy_drop: float | None = None
    # the measured best recipe (docs/method.md §9): Taylor
    # importance, no push, distillation, the whole per-round budget spent fine-tuning
    importance: str | Importance = DEFAULT_IMPORTANCE
    push: bool = False
    push_loss: Any = None
    strategy: str = "global"
    rounds: int = 4
    eta: float = 0.5
    eta_step: float = 0.25
    push_epochs: int = 2
    push_every_round: bool = False
    finetune_epochs: int = 4
    final_finetune_epochs: int | None = None
    min_finetune_steps: int = 0
    distill: bool = True
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    optimizer: OptimizerLike = DEFAULT_OPTIMIZER
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    batch_size: int = 64
    round_to: int = 1
    min_channels: int = 1
    max_pruning_ratio: float = DEFAULT_MAX_PRUNING_RATIO
    ignored_layers: tuple[str, ...] | list[str] = ()
    checkpoint_dir: str | os.PathLike | None = None
    log_dir: str | os.PathLike | None = None
    seed: int = 0
    verbose: int = 1
    callbacks: list[keras.callbacks.Callback] | None = field(default=None, repr=False)
    recalibrate_steps: int | None = 100
    unfreeze_pruned: bool = True

    @classmethod
    def names(cls) -> list[str]:
        """The option names, in order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, config: CompressConfig | None = None, **kwargs: Any) -> CompressConfig:
        """``config`` (or the defaults) with ``kwargs`` replacing its options; an unknown option
        is refused with the closest names."""
        names = cls.names()
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=2, cutoff=0.6)
                hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
                raise PruningRequestError(
                    f"unknown compress option {key!r}; {hint}valid options are {', '.join(names)}")
        if config is not None and not isinstance(config, CompressConfig):
            raise PruningRequestError(f"config={config!r}: expected a tf_gpp.prune.CompressConfig")
        return dataclasses.replace(config, **kwargs) if config is not None else cls(**kwargs)

    def validate(self) -> CompressConfig:
        """Check every option (no data, no model needed); return ``self``.

        Raises:
            PruningRequestError: naming the option, its value and the accepted values.
        """
        if self.lr_schedule not in LR_SCHEDULES:
            raise PruningRequestError(f"lr_schedule={self.lr_schedule!r}: choose 'cosine' or 'constant'")
        if self.strategy not in STRATEGIES:
            raise PruningRequestError(f"strategy={self.strategy!r}: choose 'global', 'per_layer' or 'threshold'")
        if self.sized and self.target_macs is None and self.target_params is None:
            raise PruningRequestError(f"strategy={self.strategy!r} needs target_macs or target_params (a fraction "
                                      "like 0.3); strategy='threshold' prunes without a size target")
        if not _whole(self.rounds, 1):
            raise PruningRequestError(f"rounds={self.rounds}: must be >= 1")
        if not isinstance(self.push_every_round, bool | np.bool_):
            raise PruningRequestError(
                f"push_every_round={self.push_every_round!r}: True (push before every round) or False "
                "(push once, before round 1)")
        if self.push_every_round and not self.push:
            raise PruningRequestError("push_every_round=True pushes only with push=True: pass push=True as well")
        if self.push_loss is not None and not isinstance(self.push_loss, PushLoss):
            raise PruningRequestError(
                f"push_loss={self.push_loss!r}: a tf_gpp.PushLoss (e.g. PushLoss(a=0.1, b=1.0, g=0.0)) "
                "or None for the defaults")
        for name in ("push_epochs", "finetune_epochs", "final_finetune_epochs"):
            value = getattr(self, name)
            if value is not None and not _whole(value, 0):
                raise PruningRequestError(f"{name}={value!r}: a whole number of epochs >= 0")
        if not _whole(self.min_finetune_steps, 0):
            raise PruningRequestError(
                f"min_finetune_steps={self.min_finetune_steps!r}: a whole number of optimizer steps >= 0 (0: off)")
        if self.recalibrate_steps is not None and not _whole(self.recalibrate_steps, 0):
            raise PruningRequestError(
                f"recalibrate_steps={self.recalibrate_steps!r}: a whole number >= 0 (0: off) or None (all)")
        drop = self.max_accuracy_drop
        if drop is not None and (isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop <= 1):
            raise PruningRequestError(
                f"max_accuracy_drop={drop}: a fraction of accuracy in [0, 1] (0.02 = 2 points), or None "
                "(the default: every round runs and the target is reached)")
        get_importance(self.importance)  # unknown names: PruningRequestError listing the known ones
        self.constraints()
        for name in ("target_macs", "target_params"):
            resolve_target(getattr(self, name), 1, name)  # a fraction in (0, 1] or a whole count
        targets = [t for t in (self.target_macs, self.target_params) if t is not None]
        if self.sized and targets and all(t == 1 for t in targets):
            raise PruningRequestError(
                f"target_macs={self.target_macs}, target_params={self.target_params}: a fraction of 1 keeps "
                "the whole model, the base model already meets it, nothing to prune; give a fraction below 1 "
                "(e.g. 0.3)"
            )
        alpha = self.distill_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise PruningRequestError(f"distill_alpha={alpha!r}: the distillation share of the loss, in [0, 1]")
        temp = self.distill_temperature
        if isinstance(temp, bool) or not isinstance(temp, int | float) or not math.isfinite(temp) or temp <= 0:
            raise PruningRequestError(f"distill_temperature={temp!r}: a finite number > 0")
        for name in ("learning_rate", "eta", "eta_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise PruningRequestError(f"{name}={value!r}: a finite number >= 0")
        if not _whole(self.batch_size, 1):
            raise PruningRequestError(f"batch_size={self.batch_size!r}: a whole number >= 1")
        self.optimizer_recipe()
        return self

    def optimizer_recipe(self) -> str | dict:
        """``optimizer`` in its stable JSON form (:func:`tf_gpp.training.serialize_optimizer`).

        Raises:
            PruningRequestError: not a Keras optimizer name, config dict or instance.
        """
        try:
            return serialize_optimizer(self.optimizer)
        except ArgumentError as exc:
            raise PruningRequestError(str(exc)) from exc

    def epochs_of_round(self, r: int) -> int:
        """Fine-tuning epochs of round ``r`` (1-based): ``finetune_epochs``, and for the last round
        ``final_finetune_epochs`` (default ``FINAL_FINETUNE_FACTOR * finetune_epochs``)."""
        if r < self.rounds:
            return self.finetune_epochs
        if self.final_finetune_epochs is not None:
            return self.final_finetune_epochs
        return FINAL_FINETUNE_FACTOR * self.finetune_epochs

    def constraints(self) -> Constraints:
        """The structural constraints (``round_to``, ``min_channels``, ``ignored_layers``,
        ``max_pruning_ratio``)."""
        return Constraints(self.round_to, self.min_channels, self.ignored_layers,
                           max_pruning_ratio=self.max_pruning_ratio)

    def schedule(self) -> PruningSchedule:
        """The pruning schedule of ``strategy``: geometric to the target over ``rounds``
        (ranked globally, or by the paper's per-layer ``eta * std`` rule with the ``eta`` that
        meets each round's target), or the paper's threshold with ``eta`` raised by
        ``eta_step`` each round and no size target."""
        if self.strategy == "global":
            return Geometric(rounds=self.rounds)
        if self.strategy == "per_layer":
            return PerLayerThreshold(rounds=self.rounds)
        return Threshold(self.eta, self.eta_step)

    @property
    def sized(self) -> bool:
        """Whether the strategy prunes to a MACs/params target (every strategy but ``"threshold"``)."""
        return self.strategy != "threshold"

    def recipe(self) -> dict[str, Any]:
        """The options that decide compress's result (:meth:`to_dict` without where it writes
        and how much it prints), stable across processes; a checkpoint records it so that a
        resumed run with other options is refused rather than continued. ``optimizer`` is
        recorded in its stable form (:meth:`optimizer_recipe`)."""
        named = {k: getattr(self, k) for k in self.names() if k not in _NOT_IN_RECIPE}
        named["optimizer"] = self.optimizer_recipe()
        return recipe_json(named)

    @staticmethod
    def completed(saved: dict[str, Any]) -> dict[str, Any]:
        """A recipe recorded by an older tf_gpp with the options added since at the values that
        run had (``_ADDED_LATER``), so that it compares with :meth:`recipe`."""
        return {**_ADDED_LATER, **saved}

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values (objects as their ``repr``)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "optimizer":
                try:
                    value = self.optimizer_recipe()
                except PruningRequestError:
                    value = repr(value)
            out[f.name] = value if value is None or isinstance(value, bool | int | float | str | dict) else (
                list(value) if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)
                else repr(value))
        return out
