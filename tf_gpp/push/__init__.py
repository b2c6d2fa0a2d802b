"""Push: train so the last hidden layer separates classes with few, decorrelated neurons.

>>> pm = PushModel(model)                    # the user's own functional/Sequential model
>>> pm.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
>>> pm.fit(x, y, epochs=10, callbacks=[PushSchedule(warmup_epochs=2)])
>>> plain = strip(pm)                        # independent keras.Model, same weights
"""

from tf_gpp.push.callbacks import PushSchedule
from tf_gpp.push.losses import (
    DECORRELATION_FORMS,
    SEPARATION_FORMS,
    PushLoss,
    alignment_loss,
    batch_class_stats,
    decorrelation_loss,
    push_terms,
    separation_loss,
)
from tf_gpp.push.model import PUSH_TERMS, PushModel, strip

__all__ = [
    "PushModel",
    "PushLoss",
    "PushSchedule",
    "strip",
    "push_terms",
    "separation_loss",
    "decorrelation_loss",
    "alignment_loss",
    "batch_class_stats",
    "PUSH_TERMS",
    "SEPARATION_FORMS",
    "DECORRELATION_FORMS",
]
