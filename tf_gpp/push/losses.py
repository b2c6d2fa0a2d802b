"""The push terms on one batch of feature-layer activations, as differentiable TF ops.

For features F (B, M) and integer labels y, with per-class counts n_c, class
means mu_c, batch mean mu and residuals R = F - mu_{y}::

    var_w(j) = mean_i R_ij^2                    pooled within-class variance
    var_b(j) = sum_c n_c (mu_cj - mu_j)^2 / B    between-class variance
    v_j      = var_b(j) / (var_w(j) + r)         per-neuron Fisher ratio
    r        = eps * mean_j var_w + eps^2 * mean_j (var_w + var_b) + 1e-12

* separation   ``L_sep = -mean_j log(1 + v_j)`` (``form="diagonal"``), or the batch
  LDA form ``-(1/K) sum_{k<K} log(1 + lambda_k)`` (``form="lda"``: eigenvalues of
  ``(Sw + r I)^{-1/2} Sb (Sw + r I)^{-1/2}``, K = classes in the batch - 1);
* decorrelation ``L_cov`` = mean squared off-diagonal entry of the within-class
  correlation matrix ``R^T R / sqrt(d_i d_j)`` (``d`` = its diagonal + a small floor)
  (``decorrelation="within"``), plus the same of the between-class correlation matrix
  (from ``Sb = sum_c n_c (mu_c - mu)(mu_c - mu)^T / B``) with ``decorrelation="both"``.
  ``Sb`` has rank <= C - 1, so its term cannot reach 0 when M > C - 1: it spreads the
  class means over the neurons rather than zeroing their correlations;
* alignment ``L_align = relu(ratio - sqrt(k)) / (sqrt(M) - sqrt(k))`` with
  ``ratio = ||s||_1 / ||s||_2``, ``s_j = sqrt(relu(v_j - tau) + delta)``, in [0, 1].
  ``ratio^2`` is the participation ratio — the effective number of neurons
  carrying the discriminant power. Two departures from the plain
  ``||sqrt v||_1 / ||sqrt v||_2`` of the design brief (``align_target=1`` and a
  batch with no noise floor give it back):

  - ``tau = (K - 1) / (B - K)`` (K classes in the batch) is the Fisher ratio a
    neuron *without* class information shows on a batch of B samples by chance
    (an F statistic's mean), so only significant discriminant power is
    aligned and uninformative neurons get no gradient from this term;
  - the floor ``k = align_target`` (default ``C - 1``, the dimension of the LDA
    subspace) stops the push once the power sits on about k neurons.

  Both guard against collapse: trained from scratch on a slow-learning small
  CNN (digits, 32 pooled channels) the plain ratio moved all discriminant power
  onto 5-6 channels, 9-10 channels died (ReLU) and test accuracy fell from 0.87
  to 0.2-0.4. That failure is one of *when* to push (see ``PushSchedule``'s
  ``start_epoch``): pushing a trained network, or after a warm-up, is the
  intended use (grow -> push -> prune). ``delta = 1e-3 * mean`` (no gradient)
  ``+ 1e-8`` bounds the square root's gradient.

Every term is finite, with finite gradients, for batches that miss classes, hold
a single sample of a class, hold a single class (then ``L_sep = 0``:
nothing to separate) or contain dead neurons. The ``eps^2``
floor in ``r`` keeps ``v`` finite when every class in the batch is one sample
(``var_w = 0``). Sample weights are not used: the terms describe the batch.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from tf_gpp.errors import ArgumentError

__all__ = [
    "PushLoss",
    "batch_class_stats",
    "separation_loss",
    "decorrelation_loss",
    "alignment_loss",
    "push_terms",
    "SEPARATION_FORMS",
    "DECORRELATION_FORMS",
]

SEPARATION_FORMS = ("diagonal", "lda")
#: which class-conditional correlation matrices ``L_cov`` decorrelates
DECORRELATION_FORMS = ("within", "both")
_TINY = 1e-12


def _sparse_labels(labels: Any, num_classes: int) -> tf.Tensor:
    """int32 class indices from sparse ``(B,)``/``(B, 1)`` or one-hot ``(B, C)`` labels.

    A single sigmoid output (``num_classes == 2`` with ``(B, 1)`` float targets) is
    thresholded at 0.5.
    """
    y = tf.convert_to_tensor(labels)
    if y.shape.rank == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    if y.shape.rank == 2:
        return tf.argmax(y, axis=-1, output_type=tf.int32)
    if y.dtype.is_floating:
        y = tf.round(y)
    return tf.cast(y, tf.int32)


def batch_class_stats(
    features: Any, labels: Any, num_classes: int, eps: float = 1e-3
) -> dict[str, tf.Tensor]:
    """Per-batch class statistics shared by the push terms (see the module docstring).

    Returns a dict with ``residual (B, M)``, ``centered_means (C, M)``, ``counts (C,)``,
    ``var_w``, ``var_b``, ``fisher`` (the ``v_j``, M,), ``shrinkage`` and ``batch``.
    Labels outside ``[0, C)`` are ignored (they fall in no class).
    """
    f = tf.convert_to_tensor(features)
    if f.shape.rank != 2:
        f = tf.reshape(f, [tf.shape(f)[0], -1])
    f = tf.cast(f, tf.float32)
    y = _sparse_labels(labels, num_classes)
    onehot = tf.one_hot(y, num_classes, dtype=tf.float32)
    counts = tf.reduce_sum(onehot, axis=0)
    batch = tf.maximum(tf.reduce_sum(counts), 1.0)
    sums = tf.matmul(onehot, f, transpose_a=True)
    means = sums / tf.maximum(counts, 1.0)[:, None]
    mean = tf.reduce_sum(sums, axis=0) / batch  # same ops as `means` for a one-class batch
    in_class = tf.reduce_sum(onehot, axis=1, keepdims=True)
    resid = (f - tf.matmul(onehot, means)) * in_class
    centered = (means - mean[None, :]) * tf.cast(counts > 0, tf.float32)[:, None]
    var_w = tf.reduce_sum(resid * resid, axis=0) / batch
    var_b = tf.reduce_sum(counts[:, None] * centered * centered, axis=0) / batch
    r = eps * tf.reduce_mean(var_w) + eps * eps * tf.reduce_mean(var_w + var_b) + _TINY
    return {
        "residual": resid,
        "centered_means": centered,
        "counts": counts,
        "batch": batch,
        "var_w": var_w,
        "var_b": var_b,
        "fisher": var_b / (var_w + r),
        "shrinkage": r,
    }


def _separation_lda(st: dict[str, tf.Tensor], eps: float) -> tf.Tensor:
    resid, cm, counts, batch = st["residual"], st["centered_means"], st["counts"], st["batch"]
    m = tf.shape(resid)[1]
    sw = tf.matmul(resid, resid, transpose_a=True) / batch
    sb = tf.matmul(cm * counts[:, None], cm, transpose_a=True) / batch
    tr_w = tf.linalg.trace(sw) / tf.cast(m, tf.float32)
    tr_t = tr_w + tf.linalg.trace(sb) / tf.cast(m, tf.float32)
    r = eps * tr_w + eps * eps * tr_t + _TINY
    chol = tf.linalg.cholesky(sw + r * tf.eye(m))
    half = tf.linalg.triangular_solve(chol, sb, lower=True)
    whitened = tf.linalg.triangular_solve(chol, tf.transpose(half), lower=True)
    whitened = 0.5 * (whitened + tf.transpose(whitened))
    lam = tf.maximum(tf.reverse(tf.linalg.eigvalsh(whitened), axis=[0]), 0.0)
    k = tf.minimum(tf.reduce_sum(tf.cast(counts > 0, tf.int32)) - 1, m)
    mask = tf.cast(tf.range(m) < k, tf.float32)
    return -tf.reduce_sum(mask * tf.math.log1p(lam)) / tf.maximum(tf.cast(k, tf.float32), 1.0)


def separation_loss(
    features: Any, labels: Any, num_classes: int, eps: float = 1e-3, form: str = "diagonal"
) -> tf.Tensor:
    """``L_sep``: ``-mean_j log(1 + v_j)`` (``"diagonal"``) or the batch-LDA form (``"lda"``)."""
    st = batch_class_stats(features, labels, num_classes, eps)
    return _separation(st, eps, form)


def _separation(st: dict[str, tf.Tensor], eps: float, form: str) -> tf.Tensor:
    if form == "diagonal":
        return -tf.reduce_mean(tf.math.log1p(st["fisher"]))
    if form == "lda":
        return _separation_lda(st, eps)
    raise ValueError(f"unknown separation form {form!r}; choose one of {SEPARATION_FORMS}")


def _off_diagonal_corr(cov: tf.Tensor, eps: float) -> tf.Tensor:
    """Mean squared off-diagonal entry of the correlation matrix of ``cov`` (M, M)."""
    m = tf.shape(cov)[0]
    diag = tf.linalg.diag_part(cov)
    d = diag + eps * tf.reduce_mean(diag) + _TINY
    inv_sd = tf.math.rsqrt(d)
    corr = cov * inv_sd[:, None] * inv_sd[None, :]
    off = tf.reduce_sum(corr * corr) - tf.reduce_sum(tf.square(tf.linalg.diag_part(corr)))
    pairs = tf.cast(m * (m - 1), tf.float32)
    return tf.where(pairs > 0, off / tf.maximum(pairs, 1.0), 0.0)


def _decorrelation(st: dict[str, tf.Tensor], eps: float, form: str = "within") -> tf.Tensor:
    resid, batch = st["residual"], st["batch"]
    within = _off_diagonal_corr(tf.matmul(resid, resid, transpose_a=True) / batch, eps)
    if form == "within":
        return within
    if form == "both":
        cm, counts = st["centered_means"], st["counts"]
        between = tf.matmul(cm * counts[:, None], cm, transpose_a=True) / batch
        return within + _off_diagonal_corr(between, eps)
    raise ValueError(f"unknown decorrelation form {form!r}; choose one of {DECORRELATION_FORMS}")


def decorrelation_loss(
    features: Any, labels: Any, num_classes: int, eps: float = 1e-3, form: str = "within"
) -> tf.Tensor:
    """``L_cov``: mean squared off-diagonal entry of the within-class correlation matrix
    (``form="within"``), plus that of the between-class one (``form="both"``)."""
    return _decorrelation(batch_class_stats(features, labels, num_classes, eps), eps, form)


def _alignment(st: dict[str, tf.Tensor], target: float) -> tf.Tensor:
    present = tf.reduce_sum(tf.cast(st["counts"] > 0, tf.float32))
    noise = (present - 1.0) / tf.maximum(st["batch"] - present, 1.0)
    v = tf.nn.relu(st["fisher"] - noise)
    m = tf.cast(tf.shape(v)[0], tf.float32)
    delta = tf.stop_gradient(1e-3 * tf.reduce_mean(v)) + 1e-8
    s = tf.sqrt(v + delta)
    ratio = tf.reduce_sum(s) / tf.sqrt(tf.reduce_sum(s * s))
    floor = tf.sqrt(tf.clip_by_value(tf.cast(target, tf.float32), 1.0, m))
    span = tf.sqrt(m) - floor
    return tf.where(span > 0.0, tf.nn.relu(ratio - floor) / tf.maximum(span, 1e-6), 0.0)


def _target(num_classes: int, align_target: float | None) -> float:
    return float(num_classes - 1) if align_target is None else float(align_target)


def alignment_loss(
    features: Any,
    labels: Any,
    num_classes: int,
    eps: float = 1e-3,
    align_target: float | None = None,
) -> tf.Tensor:
    """``L_align``: hinge on ``||sqrt v||_1 / ||sqrt v||_2`` above ``sqrt(target)``, in [0, 1].

    ``align_target`` is the effective number of discriminant neurons aimed at
    (default ``num_classes - 1``; 1 gives the plain normalised ratio).
    """
    st = batch_class_stats(features, labels, num_classes, eps)
    return _alignment(st, _target(num_classes, align_target))


def push_terms(
    features: Any,
    labels: Any,
    num_classes: int,
    eps: float = 1e-3,
    form: str = "diagonal",
    align_target: float | None = None,
    decorrelation: str = "within",
) -> dict[str, tf.Tensor]:
    """All three unweighted terms ``{"sep", "cov", "align"}`` from one shared pass
    (``form``: the separation's, ``decorrelation``: which correlation matrices ``L_cov`` takes)."""
    st = batch_class_stats(features, labels, num_classes, eps)
    return {
        "sep": _separation(st, eps, form),
        "cov": _decorrelation(st, eps, decorrelation),
        "align": _alignment(st, _target(num_classes, align_target)),
    }


@keras.saving.register_keras_serializable(package="tf_gpp")
class PushLoss(keras.losses.Loss):
    """The weighted push objective ``a * L_sep + b * L_cov + g * L_align``.

    The defaults (``a=0.1, b=10, g=0``, within-class decorrelation, diagonal separation) are
    the variant that measured at least as good as no push inside ``compress`` at 30% and 10%
    MACs (``tools/ablation_push.py``, docs/method.md §7); alignment (``g``, ours) and the
    between-class decorrelation cost accuracy at 10% there.

    As a Keras loss it takes ``(labels, features)``, so it can also be attached to a
    feature output of a multi-output model; :class:`~tf_gpp.push.PushModel` uses
    :meth:`terms` and its own (schedulable) weights instead.

    Args:
        a, b, g: weights of separation, decorrelation and alignment.
        num_classes: C; may be left ``None`` when labels are one-hot.
        separation: ``"diagonal"`` (stable, default) or ``"lda"`` (batch eigenvalues).
        eps: relative shrinkage of the within-class variance.
        align_target: effective number of discriminant neurons the alignment term
            aims at; default ``num_classes - 1``.
        decorrelation: ``"within"`` (the within-class correlation matrix) or ``"both"``
            (within- and between-class, each weighted ``b``).
    """

    def __init__(
        self,
        a: float = 0.1,
        b: float = 10.0,
        g: float = 0.0,
        num_classes: int | None = None,
        separation: str = "diagonal",
        eps: float = 1e-3,
        align_target: float | None = None,
        decorrelation: str = "within",
        name: str = "push_loss",
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        if separation not in SEPARATION_FORMS:
            raise ArgumentError(f"separation must be one of {SEPARATION_FORMS}, got {separation!r}")
        if decorrelation not in DECORRELATION_FORMS:
            raise ArgumentError(
                f"decorrelation must be one of {DECORRELATION_FORMS}, got {decorrelation!r}")
        if not eps > 0:
            raise ArgumentError(f"eps must be > 0, got {eps}")
        for key, value in (("a", a), ("b", b), ("g", g)):
            if not (math.isfinite(float(value)) and float(value) >= 0):
                raise ArgumentError(f"push weight {key}={value}: must be finite and >= 0 (0 turns the term off)")
        self.a, self.b, self.g = float(a), float(b), float(g)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.separation = separation
        self.decorrelation = decorrelation
        self.eps = float(eps)
        if align_target is not None and align_target < 1:
            raise ArgumentError(f"align_target must be >= 1, got {align_target}")
        self.align_target = None if align_target is None else float(align_target)

    def terms(
        self, features: Any, labels: Any, num_classes: int | None = None
    ) -> dict[str, tf.Tensor]:
        """Unweighted ``{"sep", "cov", "align"}`` on one batch."""
        c = num_classes or self.num_classes
        if c is None:
            y = tf.convert_to_tensor(labels)
            if y.shape.rank == 2 and y.shape[-1] not in (None, 1):
                c = int(y.shape[-1])
            else:
                raise ValueError("PushLoss needs num_classes for sparse labels.")
        return push_terms(features, labels, int(c), self.eps, self.separation, self.align_target,
                          self.decorrelation)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        t = self.terms(y_pred, y_true)
        return self.a * t["sep"] + self.b * t["cov"] + self.g * t["align"]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            a=self.a,
            b=self.b,
            g=self.g,
            num_classes=self.num_classes,
            separation=self.separation,
            decorrelation=self.decorrelation,
            eps=self.eps,
            align_target=self.align_target,
        )
        return config
