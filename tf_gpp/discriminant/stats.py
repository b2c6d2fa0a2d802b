"""Streaming float64 discriminant statistics of a feature layer: :class:`ScatterStats`.

State per class c: the count ``n_c``, the mean ``mu_c`` and — pooled over
classes — the within-class scatter ``Sw = sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T``.
Everything else follows exactly from these: the overall mean
``mu = sum_c n_c mu_c / n``, the between-class scatter
``Sb = sum_c n_c (mu_c - mu)(mu_c - mu)^T`` and the total scatter ``St = Sw + Sb``.
(``Sb`` is formed from the class means rather than as ``St - Sw``: identical
in exact arithmetic, but free of cancellation.)

Two partial results merge with Chan et al.'s parallel update, class by class::

    n = n_a + n_b,  d = mu_b - mu_a,  mu = mu_a + d n_b / n,
    Sw = Sw_a + Sw_b + sum_c (n_a n_b / n)_c d_c d_c^T

so batches, ``tf.distribute`` replicas (see :mod:`.moments`) and workers
(``to_dict``/``from_dict`` + ``merge``) reduce the same way, in any order.

``full=False`` keeps only the diagonal of ``Sw`` (enough for the ``fisher``
utility; memory O(C M) instead of O(M^2) for very wide feature layers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from tf_gpp.data.labels import as_class_indices, as_feature_matrix
from tf_gpp.errors import DataError

__all__ = ["ScatterStats"]


class ScatterStats:
    """Per-class counts and means plus within-class scatter, accumulated in float64.

    Args:
        num_classes: number of classes C (labels are ``0..C-1``).
        num_features: feature dimension M; inferred from the first batch if ``None``.
        full: keep the full ``(M, M)`` within-class scatter (needed for LDA); if
            ``False`` only its diagonal is kept.

    Build with :meth:`from_arrays`, :meth:`update` or :meth:`accumulate`; combine
    with :meth:`merge` (or ``+``).
    """

    def __init__(self, num_classes: int, num_features: int | None = None, full: bool = True):
        if int(num_classes) != num_classes or num_classes < 1:
            raise DataError(f"num_classes must be a positive integer, got {num_classes!r}.")
        self.num_classes = int(num_classes)
        self.full = bool(full)
        self.num_features: int | None = None
        self._n = np.zeros(self.num_classes, np.float64)
        self._mean: np.ndarray | None = None
        self._sw: np.ndarray | None = None
        if num_features is not None:
            self._allocate(int(num_features))

    # ------------------------------------------------------------------ construction
    def _allocate(self, m: int) -> None:
        if m < 1:
            raise DataError(f"the feature layer must have at least one unit, got M={m}.")
        self.num_features = m
        self._mean = np.zeros((self.num_classes, m), np.float64)
        self._sw = np.zeros((m, m) if self.full else (m,), np.float64)

    def copy(self) -> ScatterStats:
        """An independent copy."""
        out = ScatterStats(self.num_classes, full=self.full)
        out.num_features = self.num_features
        out._n = self._n.copy()
        out._mean = None if self._mean is None else self._mean.copy()
        out._sw = None if self._sw is None else self._sw.copy()
        return out

    @classmethod
    def from_arrays(
        cls, x: Any, y: Any, num_classes: int | None = None, full: bool = True
    ) -> ScatterStats:
        """Statistics of features ``x (n, M)`` with labels ``y`` (indices or one-hot).

        ``num_classes=None`` infers C from the labels (max + 1, or the one-hot width).
        """
        feats = as_feature_matrix(x)
        if feats.shape[0] == 0:
            raise DataError("no samples: features have 0 rows; pass a non-empty array.")
        labels = as_class_indices(y, num_classes, feats.shape[0])
        if num_classes is None:
            y_arr = np.asarray(y)
            one_hot = y_arr.ndim == 2 and y_arr.shape[1] > 1
            num_classes = y_arr.shape[1] if one_hot else int(labels.max()) + 1
        return cls(num_classes, feats.shape[1], full=full)._update_checked(feats, labels)

    @classmethod
    def from_moments(
        cls,
        moments: Mapping[str, Any],
        shift: np.ndarray | None = None,
        num_classes: int | None = None,
        full: bool | None = None,
    ) -> ScatterStats:
        """Statistics of one batch from the SUM-reduced output of :func:`.moments.batch_moments`.

        Raises :class:`DataError` if the batch held invalid labels or non-finite features.
        """
        m = {k: np.asarray(v, np.float64) for k, v in moments.items()}
        if m.get("invalid_labels", 0.0) > 0:
            raise DataError(
                f"{int(m['invalid_labels'])} labels were not integral class indices in "
                f"[0, {m['count'].shape[0]}); remap labels to 0..C-1 or pass the right "
                "num_classes."
            )
        if m.get("nonfinite_rows", 0.0) > 0:
            raise DataError(
                f"{int(m['nonfinite_rows'])} feature rows contain NaN or inf. The network "
                "has diverged or the inputs are not preprocessed."
            )
        n, s, cross = m["count"], m["sum"], m["cross"]
        num_classes = n.shape[0] if num_classes is None else num_classes
        full = cross.ndim == 2 if full is None else full
        out = cls(num_classes, s.shape[1], full=full)
        seen = n > 0
        inv = np.where(seen, 1.0 / np.where(seen, n, 1.0), 0.0)
        mean_shifted = s * inv[:, None]
        if full:
            sw = cross - (s * inv[:, None]).T @ s
            sw = 0.5 * (sw + sw.T)
        else:
            sw = np.maximum(cross - np.einsum("cm,c,cm->m", s, inv, s), 0.0)
        out._n = n.copy()
        out._mean = (
            mean_shifted
            if shift is None
            else np.where(seen[:, None], np.asarray(shift, np.float64) + mean_shifted, 0.0)
        )
        out._sw = sw
        return out

    def update(self, x: Any, y: Any) -> ScatterStats:
        """Add a batch in place (Chan's update) and return ``self``. Empty batches are a no-op."""
        feats = as_feature_matrix(x)
        labels = as_class_indices(y, self.num_classes, feats.shape[0])
        return self._update_checked(feats, labels)

    def _update_checked(self, feats: np.ndarray, labels: np.ndarray) -> ScatterStats:
        if feats.shape[0] == 0:
            return self
        if self.num_features is not None and feats.shape[1] != self.num_features:
            raise DataError(
                f"features have {feats.shape[1]} columns but these statistics hold "
                f"{self.num_features}; feed the same feature layer every time."
            )
        onehot = np.zeros((feats.shape[0], self.num_classes), np.float64)
        onehot[np.arange(feats.shape[0]), labels] = 1.0
        n_b = onehot.sum(axis=0)
        mean_b = (onehot.T @ feats) / np.maximum(n_b, 1.0)[:, None]
        resid = feats - mean_b[labels]
        sw_b = resid.T @ resid if self.full else np.einsum("nm,nm->m", resid, resid)
        self._merge_in_place(n_b, mean_b, sw_b, feats.shape[1])
        return self

    def _merge_in_place(
        self, n_b: np.ndarray, mean_b: np.ndarray, sw_b: np.ndarray, m: int
    ) -> None:
        if self.num_features is None:
            self._allocate(m)
        assert self._mean is not None and self._sw is not None
        n_a, mean_a = self._n, self._mean
        n = n_a + n_b
        safe = np.where(n > 0, n, 1.0)
        delta = mean_b - mean_a
        self._mean = mean_a + delta * (n_b / safe)[:, None]
        w = n_a * n_b / safe
        if self.full:
            self._sw = self._sw + sw_b + (delta * w[:, None]).T @ delta
        else:
            self._sw = self._sw + sw_b + np.einsum("c,cm,cm->m", w, delta, delta)
        self._n = n

    def merge(self, other: ScatterStats) -> ScatterStats:
        """Statistics of the union of both samples (a new object; neither input changes)."""
        if not isinstance(other, ScatterStats):
            raise TypeError(f"cannot merge ScatterStats with {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise DataError(
                f"cannot merge statistics over {self.num_classes} and {other.num_classes} classes."
            )
        if other.full != self.full:
            raise DataError("cannot merge full and diagonal-only statistics; use the same `full`.")
        out = self.copy()
        if other.num_features is None:
            return out
        if out.num_features is not None and out.num_features != other.num_features:
            raise DataError(
                f"cannot merge statistics of {out.num_features} and {other.num_features} features."
            )
        assert other._mean is not None and other._sw is not None
        out._merge_in_place(other._n, other._mean, other._sw, other.num_features)
        return out

    def __add__(self, other: ScatterStats) -> ScatterStats:
        return self.merge(other)

    def __radd__(self, other: Any) -> ScatterStats:
        if isinstance(other, int) and other == 0:  # lets sum(list_of_stats) work
            return self.copy()
        return NotImplemented

    @classmethod
    def merge_all(cls, parts: Iterable[ScatterStats]) -> ScatterStats:
        """Merge any number of partial statistics (e.g. gathered from workers)."""
        parts = list(parts)
        if not parts:
            raise DataError("merge_all needs at least one ScatterStats.")
        out = parts[0].copy()
        for p in parts[1:]:
            out = out.merge(p)
        return out

    # ------------------------------------------------------------------ streaming
    @classmethod
    def accumulate(
        cls,
        feature_fn: Callable[[Any], Any] | None,
        data: Any,
        num_classes: int,
        *,
        batch_size: int = 256,
        steps: int | None = None,
        strategy: Any = None,
        full: bool = True,
        verbose: int = 0,
    ) -> ScatterStats:
        """One streaming pass over ``data``, computing features with ``feature_fn``.

        Args:
            feature_fn: a ``keras.Model`` (called with ``training=False``; e.g.
                :func:`~tf_gpp.discriminant.feature_model`), any TF-traceable callable
                ``x -> (B, M)`` features, or ``None`` if ``data`` already holds features.
            data: a batched ``tf.data.Dataset`` yielding ``(x, y)`` or ``(x, y, w)``
                (weights are ignored), or an ``(x, y)`` tuple of arrays.
            num_classes: C.
            batch_size: batch size used when ``data`` is a tuple of arrays.
            steps: stop after this many batches (required for infinite datasets).
            strategy: a ``tf.distribute.Strategy``; replicas compute per-class sums on
                their shards and these are combined with ``strategy.reduce(SUM)``.
            full: keep the full within-class scatter (see the class docstring).
            verbose: 1 shows a ``keras.utils.Progbar``.
        """
        import keras
        import tensorflow as tf

        from tf_gpp.discriminant.moments import distributed_moments_fn

        ds = _as_dataset(data, batch_size)
        card = int(ds.cardinality())
        if steps is None and card == int(tf.data.INFINITE_CARDINALITY):
            raise DataError("the dataset repeats forever; pass steps= to bound the pass.")
        target = steps if steps is not None else (card if card >= 0 else None)
        bar = keras.utils.Progbar(target, unit_name="batch") if verbose else None
        fn = _feature_callable(feature_fn)
        stats = cls(num_classes, full=full)
        if strategy is None:
            compiled = tf.function(fn, reduce_retracing=True)
            for step, batch in enumerate(ds):
                if steps is not None and step >= steps:
                    break
                x, y = _split_batch(batch)
                stats.update(np.asarray(compiled(x)), np.asarray(y))
                if bar is not None:
                    bar.update(step + 1)
        else:
            run = distributed_moments_fn(strategy, fn, num_classes, full)
            for step, batch in enumerate(strategy.experimental_distribute_dataset(ds)):
                if steps is not None and step >= steps:
                    break
                x, y = _split_batch(batch)
                shift = stats._shift()
                moments = run(x, y, tf.constant(shift) if shift is not None else None)
                part = cls.from_moments(
                    {k: v.numpy() for k, v in moments.items()}, shift, num_classes, full
                )
                stats = stats.merge(part)
                if bar is not None:
                    bar.update(step + 1)
        if stats.num_samples == 0:
            raise DataError("the dataset yielded no samples; check the input pipeline.")
        return stats

    def _shift(self) -> np.ndarray | None:
        """Per-class shift for the TF moments: class means, or the overall mean for unseen classes."""
        if self._mean is None or self.num_samples == 0:
            return None
        seen = self._n > 0
        return np.where(seen[:, None], self._mean, self.mean[None, :])

    # ------------------------------------------------------------------ results
    def _require_data(self) -> None:
        if self.num_features is None or self.num_samples == 0:
            raise DataError("these statistics hold no samples yet; call update() first.")

    @property
    def num_samples(self) -> int:
        """Total number of samples n."""
        return int(round(float(self._n.sum())))

    @property
    def counts(self) -> np.ndarray:
        """Per-class counts ``n_c`` (C,), int64."""
        return np.rint(self._n).astype(np.int64)

    @property
    def classes_present(self) -> np.ndarray:
        """Indices of the classes with at least one sample."""
        return np.nonzero(self._n > 0)[0]

    @property
    def means(self) -> np.ndarray:
        """Per-class means ``mu_c`` (C, M); rows of classes without samples are 0."""
        self._require_data()
        assert self._mean is not None
        return self._mean.copy()

    @property
    def mean(self) -> np.ndarray:
        """Overall mean ``mu`` (M,)."""
        self._require_data()
        assert self._mean is not None
        return (self._n @ self._mean) / self._n.sum()

    def _centered_means(self) -> np.ndarray:
        assert self._mean is not None
        return np.where(self._n[:, None] > 0, self._mean - self.mean[None, :], 0.0)

    @property
    def Sw(self) -> np.ndarray:  # noqa: N802 - the paper's name
        """Within-class scatter (M, M). Requires ``full=True``."""
        self._require_data()
        if not self.full:
            raise DataError("these statistics keep only diag(Sw) (full=False); use sw_diagonal.")
        assert self._sw is not None
        return self._sw.copy()

    @property
    def sw_diagonal(self) -> np.ndarray:
        """Diagonal of the within-class scatter (M,)."""
        self._require_data()
        assert self._sw is not None
        return np.diag(self._sw).copy() if self.full else self._sw.copy()

    @property
    def Sb(self) -> np.ndarray:  # noqa: N802
        """Between-class scatter ``sum_c n_c (mu_c - mu)(mu_c - mu)^T`` (M, M)."""
        self._require_data()
        d = self._centered_means()
        return (d * self._n[:, None]).T @ d

    @property
    def sb_diagonal(self) -> np.ndarray:
        """Diagonal of the between-class scatter (M,)."""
        self._require_data()
        d = self._centered_means()
        return self._n @ (d * d)

    @property
    def St(self) -> np.ndarray:  # noqa: N802
        """Total scatter ``Sw + Sb`` (M, M). Requires ``full=True``."""
        return self.Sw + self.Sb

    @property
    def variances_within(self) -> np.ndarray:
        """Pooled within-class variance per neuron, ``diag(Sw) / n`` (M,)."""
        return self.sw_diagonal / self.num_samples

    @property
    def variances_between(self) -> np.ndarray:
        """Between-class variance per neuron, ``diag(Sb) / n`` (M,)."""
        return self.sb_diagonal / self.num_samples

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of numpy arrays (``np.savez(**d)``-able); inverse of :meth:`from_dict`."""
        return {
            "num_classes": self.num_classes,
            "num_features": self.num_features,
            "full": self.full,
            "counts": self._n.copy(),
            "means": None if self._mean is None else self._mean.copy(),
            "scatter_within": None if self._sw is None else self._sw.copy(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScatterStats:
        """Rebuild from :meth:`to_dict` output (arrays or nested lists)."""
        m = d.get("num_features")
        if isinstance(m, np.ndarray):  # a 0-d array after np.savez / np.load
            m = m.item()
        out = cls(int(d["num_classes"]), full=bool(d["full"]))
        out._n = np.asarray(d["counts"], np.float64).reshape(out.num_classes)
        if m is not None:
            out._allocate(int(m))
            out._mean = np.asarray(d["means"], np.float64).reshape(out.num_classes, int(m))
            shape = (int(m), int(m)) if out.full else (int(m),)
            out._sw = np.asarray(d["scatter_within"], np.float64).reshape(shape)
        return out

    def __repr__(self) -> str:
        return (
            f"ScatterStats(num_classes={self.num_classes}, num_features={self.num_features}, "
            f"num_samples={self.num_samples}, full={self.full})"
        )


def _as_dataset(data: Any, batch_size: int) -> Any:
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple | list) and len(data) in (2, 3):
        return tf.data.Dataset.from_tensor_slices(tuple(data[:2])).batch(batch_size)
    raise DataError(
        f"data must be a batched tf.data.Dataset of (x, y) or an (x, y) tuple of arrays, "
        f"got {type(data).__name__}."
    )


def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, tuple | list) and len(batch) in (2, 3):
        return batch[0], batch[1]
    raise DataError(
        "each dataset element must be an (x, y) or (x, y, sample_weight) tuple with labels; "
        f"got {type(batch).__name__}."
    )


def _feature_callable(feature_fn: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    import keras

    if feature_fn is None:
        return lambda x: x
    if isinstance(feature_fn, keras.Layer):
        return lambda x: feature_fn(x, training=False)
    if not callable(feature_fn):
        raise TypeError(f"feature_fn must be a keras model or a callable, got {feature_fn!r}")
    return feature_fn
