"""Knowledge distillation for fine-tuning a pruned model from the unpruned one.

:class:`~tf_gpp.training.Distiller` lives with the one trainer (:mod:`tf_gpp.training`), which
``compress``, the grower and the demo share; it stays importable from here.
"""

from __future__ import annotations

from tf_gpp.training import Distiller

__all__ = ["Distiller"]
