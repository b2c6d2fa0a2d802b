"""``PushSchedule``: set the push weights a, b, g epoch by epoch.

Three ways, in order of precedence:

* ``schedule``: a callable ``epoch -> {"a": ..., "b": ..., "g": ...}`` (missing keys keep
  their target) or ``-> (a, b, g)``;
* ``start_epoch=s, warmup_epochs=k``: weights are 0 before epoch ``s`` (the task trains
  alone — push a network that has learnt something), then rise linearly over ``k``
  epochs: ``target * min(1, (epoch - s + 1) / k)``;
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

from tf_gpp.errors import TfGppError

__all__ = ["PushSchedule"]

_KEYS = ("a", "b", "g")


@keras.saving.register_keras_serializable(package="tf_gpp")
class PushSchedule(keras.callbacks.Callback):
    """Schedule the push weights over epochs (see the module docstring).

    Args:
        a, b, g: target weights; ``None`` keeps the model's value at ``fit`` start.
        warmup_epochs: epochs of linear warm-up to the targets (0 = full weight at once).
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
    ):
        super().__init__()
        if warmup_epochs < 0 or start_epoch < 0:
            raise ValueError(
                f"warmup_epochs and start_epoch must be >= 0, got {warmup_epochs}, {start_epoch}"
            )
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be callable, got {schedule!r}")
        self.targets = {"a": a, "b": b, "g": g}
        self.warmup_epochs = int(warmup_epochs)
        self.start_epoch = int(start_epoch)
        self.schedule = schedule
        self._resolved: dict[str, float] = {}

    def _variables(self) -> dict[str, Any]:
        weights = getattr(self.model, "push_weights", None)
        if not isinstance(weights, Mapping) or set(weights) != set(_KEYS):
            raise TfGppError(
                f"PushSchedule needs a tf_gpp.push.PushModel, got {type(self.model).__name__}; "
                "wrap the model with PushModel(model) before fit()."
            )
        return dict(weights)

    def weights_at(self, epoch: int) -> dict[str, float]:
        """The weights used during ``epoch`` (0-based)."""
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
        else:
            factor = 1.0
        targets = {k: v * factor for k, v in targets.items()}
        return targets

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._resolved = {
            k: float(keras.ops.convert_to_numpy(v)) for k, v in self._variables().items()
        }

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        variables = self._variables()
        for k, v in self.weights_at(epoch).items():
            variables[k].assign(v)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        for k, v in self._variables().items():
            logs[f"push_{k}"] = float(keras.ops.convert_to_numpy(v))

    def get_config(self) -> dict[str, Any]:
        return {
            **self.targets,
            "warmup_epochs": self.warmup_epochs,
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
