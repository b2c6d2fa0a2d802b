"""``PushSchedule``: set the push weights a, b, g epoch by epoch.

Three ways, in order of precedence:

* ``schedule``: a callable ``epoch -> {"a": ..., "b": ..., "g": ...}`` (missing keys keep
  their target) or ``-> (a, b, g)``;
* ``start_epoch=s, warmup_epochs=k``: weights are 0 before epoch ``s`` (the task trains
  alone — push a network that has learnt something), then rise linearly over ``k``
  epochs: ``target * min(1, (epoch - s + 1) / k)`` (so ``k = 1`` is full weight at once);
* ``start_epoch=s, warmup_steps=n``: from epoch ``s`` on, the weights rise linearly per
  optimizer step, ``target * min(1, i / n)`` at the ``i``-th step (0-based) since epoch
  ``s`` began: 0 at its first step, the targets from step ``n`` on;
* otherwise constant targets.

Targets ``a, b, g`` default to the model's weights when training starts (i.e. the
``PushLoss`` it was built with). The weights in force during an epoch are written
into that epoch's ``logs`` as ``push_a``, ``push_b``, ``push_g``, so ``History`` and
callbacks after this one in the list (e.g. ``TensorBoard``) see them — put
``PushSchedule`` first. The model must be a :class:`~tf_gpp.push.PushModel` (anything
with a ``push_weights`` dict of variables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from tf_gpp.errors import ArgumentError, TfGppError

__all__ = ["PushSchedule"]

_KEYS = ("a", "b", "g")


@keras.saving.register_keras_serializable(package="tf_gpp")
class PushSchedule(keras.callbacks.Callback):
    """Schedule the push weights over epochs (see the module docstring).

    Args:
        a, b, g: target weights; ``None`` keeps the model's value at ``fit`` start.
        warmup_epochs: epochs of linear warm-up to the targets (0 = full weight at once).
        warmup_steps: optimizer steps of linear warm-up from 0 to the targets, from the
            first step of ``start_epoch`` (0 = off); not with ``warmup_epochs`` or ``schedule``.
        start_epoch: first epoch (0-based) with non-zero push weights.
        schedule: callable ``epoch -> mapping or (a, b, g)``; overrides the warm-up.
            Use a function registered with ``keras.saving.register_keras_serializable``
            if the callback's config must be serialisable.
    """

    def __init__(
        self,
        a: float | None = None,
        b: float | None = None,
        g: float | None = None,
        warmup_epochs: int = 0,
        start_epoch: int = 0,
        schedule: Callable[[int], Mapping[str, float] | Sequence[float]] | None = None,
        warmup_steps: int = 0,
    ):
        super().__init__()
        if warmup_epochs < 0 or start_epoch < 0 or warmup_steps < 0:
            raise ArgumentError(
                "warmup_epochs, warmup_steps and start_epoch must be >= 0, got "
                f"{warmup_epochs}, {warmup_steps}, {start_epoch}"
            )
        if warmup_steps > 0 and (warmup_epochs > 0 or schedule is not None):
            raise ArgumentError(
                f"warmup_steps={warmup_steps} ramps per step; it cannot be combined with "
                f"warmup_epochs={warmup_epochs} or a schedule: give one of them"
            )
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be callable, got {schedule!r}")
        self.targets = {"a": a, "b": b, "g": g}
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_steps = int(warmup_steps)
        self.start_epoch = int(start_epoch)
        self.schedule = schedule
        self._resolved: dict[str, float] = {}
        self._epoch = 0
        self._done = 0  # optimizer steps of the epochs finished since start_epoch began
        self._seen = 0  # optimizer steps of the current epoch so far
        self._ramped = False  # the step warm-up has reached the targets

    def _variables(self) -> dict[str, Any]:
        weights = getattr(self.model, "push_weights", None)
        if not isinstance(weights, Mapping) or set(weights) != set(_KEYS):
            raise TfGppError(
                f"PushSchedule needs a tf_gpp.push.PushModel, got {type(self.model).__name__}; "
                "wrap the model with PushModel(model) before fit()."
            )
        return dict(weights)

    def weights_at(self, epoch: int, step: int | None = None) -> dict[str, float]:
        """The weights used during ``epoch`` (0-based); with ``warmup_steps``, at the ``step``-th
        optimizer step since ``start_epoch`` began (``None``: after the warm-up)."""
        targets = {k: float(v) for k, v in self._resolved.items()}
        for k, v in self.targets.items():
            if v is not None:
                targets[k] = float(v)
        if self.schedule is not None:
            out = self.schedule(epoch)
            if isinstance(out, Mapping):
                unknown = set(out) - set(_KEYS)
                if unknown:
                    raise ValueError(f"schedule returned unknown keys {sorted(unknown)}")
                targets.update({k: float(v) for k, v in out.items()})
            else:
                values = list(out)
                if len(values) != 3:
                    raise ValueError(f"schedule must return (a, b, g), got {out!r}")
                targets = dict(zip(_KEYS, map(float, values), strict=True))
            return targets
        if epoch < self.start_epoch:
            factor = 0.0
        elif self.warmup_epochs > 0:
            factor = min(1.0, (epoch - self.start_epoch + 1) / self.warmup_epochs)
        elif self.warmup_steps > 0 and step is not None:
            factor = min(1.0, max(step, 0) / self.warmup_steps)
        else:
            factor = 1.0
        targets = {k: v * factor for k, v in targets.items()}
        return targets

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._resolved = {
            k: float(keras.ops.convert_to_numpy(v)) for k, v in self._variables().items()
        }
        self._epoch = self._done = self._seen = 0
        self._ramped = False

    def _assign(self, weights: Mapping[str, float]) -> None:
        variables = self._variables()
        for k, v in weights.items():
            variables[k].assign(v)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch, self._seen = epoch, 0
        self._assign(self.weights_at(epoch, self._done if epoch >= self.start_epoch else None))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # ``batch`` is the epoch's step index (its first step under steps_per_execution > 1)
        if self.warmup_steps > 0 and self._epoch >= self.start_epoch and not self._ramped:
            step = self._done + batch
            self._assign(self.weights_at(self._epoch, step))
            self._ramped = step >= self.warmup_steps  # then they stay at the targets

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._seen = batch + 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch >= self.start_epoch:
            self._done += self._seen
        if logs is None:
            return
        for k, v in self._variables().items():
            logs[f"push_{k}"] = float(keras.ops.convert_to_numpy(v))

    def get_config(self) -> dict[str, Any]:
        return {
            **self.targets,
            "warmup_epochs": self.warmup_epochs,
            "warmup_steps": self.warmup_steps,
            "start_epoch": self.start_epoch,
            "schedule": None
            if self.schedule is None
            else keras.saving.serialize_keras_object(self.schedule),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PushSchedule:
        config = dict(config)
        if config.get("schedule") is not None:
            config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
