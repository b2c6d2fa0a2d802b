"""Knowledge distillation for fine-tuning a pruned model from the unpruned one."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_gpp")
class Distiller(keras.Model):
    """Train ``student`` on ``(1-alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T)``.

    Both models must output logits (or the same kind of output); the teacher is
    frozen. ``call`` returns the student's output, so metrics are the student's.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, alpha: float = 0.5,
                 temperature: float = 4.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        task = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if not training or self.alpha == 0:
            return task
        t = self.temperature
        soft_t = ops.softmax(self.teacher(x, training=False) / t, axis=-1)
        log_s = ops.log_softmax(y_pred / t, axis=-1)
        kl = ops.mean(ops.sum(soft_t * (ops.log(soft_t + 1e-8) - log_s), axis=-1))
        return (1.0 - self.alpha) * task + self.alpha * t * t * kl

    def get_config(self) -> dict:
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "alpha": self.alpha,
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config: dict) -> Distiller:
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
