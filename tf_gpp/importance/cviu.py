"""The CVIU pipeline (Tian, Arbel & Clark, "Task dependent deep LDA pruning", CVIU 2021):
``importance="gpp"``.

1. **Fisher utility** of the feature layer (the last hidden layer; CVIU Eq. 6-8, Sw and Sb
   taken as diagonal): ``v_j = sigma_b^2(j) / sigma_w^2(j)``, 0 for zero-variance neurons
   (:func:`tf_gpp.discriminant.neuron_utility`, shrinkage ``eps``).
2. **Top-M' selection** (:func:`select_top_features`): the smallest top-M' set of feature
   neurons, ranked by ``v``, whose frozen features classify the validation data within
   ``tolerance`` of all of them, measured with a probe fitted on the training features
   (least squares on one-hot targets, or nearest class mean). Only those M' stay non-zero.
3. **Deconv trace per image** (CVIU Eq. 9-12, Zeiler & Fergus): starting from the kept
   utilities ``w`` (``w_j = v_j`` for kept ``j``, else 0) at the feature layer, the signal
   goes back per image: transposed convolutions and Dense layers (``U_i = F_i^T Z_i``),
   unpooling through the forward pass's max-pool switches, and rectification at every ReLU
   (:func:`deconv_maps`). The per-image map of a channel is the back-projected signal
   itself, at the output of the layer that produces the channel. The maps are averaged over
   N training images (``images_per_class`` of each class), and a channel's utility is the
   **maximum over spatial positions** of its averaged map (:func:`channel_utility`; a
   negative maximum counts as 0).

How the transposed pass is computed: it is the backward pass of ``S = sum_j w_j f_j`` with
respect to each layer's activations, which applies exactly the transposes of the linear
layers (biases and BatchNorm shifts drop out; inference BatchNorm contributes its per-channel
scale ``gamma / sqrt(var + eps)``), routes through max-pool switches and spreads through
average pooling. Only the ReLU step differs from backprop: the deconvnet rectifies the
backward signal (``relu(dZ)``) instead of gating it by the forward activation, so every ReLU
of a private copy of the model gets that rule (``relu="deconv"``; ``relu="gradient"`` keeps
backprop's forward gates). Other activations (sigmoid, swish, ...) have no deconv rule: the
trace uses their derivative at the forward point.

Coupled channels (a residual ``Add``, a concatenation) sum their producers' utilities (as
every :class:`~tf_gpp.importance.base.Importance`); units inside a layer (attention heads) have
no map and are scored by their L1 norm. docs/method.md §4 says what is the paper's and what is
ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.data.intake import TaskInfo, labelled_batches
from tf_gpp.discriminant import ScatterStats, feature_model, find_feature_layer, neuron_utility
from tf_gpp.errors import ArgumentError, DataError, UnsupportedModelError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance.base import Importance, per_class_sample
from tf_gpp.importance.gates import gated_model

__all__ = [
    "CVIUUtility",
    "PROBES",
    "RELU_RULES",
    "TopSelection",
    "channel_utility",
    "deconv_maps",
    "deconv_model",
    "probe_accuracy",
    "select_top_features",
]

PROBES = ("lstsq", "ncm")
RELU_RULES = ("deconv", "gradient")


# ---------------------------------------------------------------- 2. top-M' selection
def _ridge(stats: ScatterStats, eps: float) -> float:
    sw = stats.sw_diagonal + stats.sb_diagonal
    r = eps * float(sw.mean()) if sw.size else 0.0
    return r if r > 0 else 1e-12


def probe_accuracy(
    stats: ScatterStats, keep: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    probe: str = "lstsq", eps: float = 1e-3,
) -> float:
    """Validation accuracy of a classifier on the feature neurons ``keep`` alone, fitted on the
    training features summarised by ``stats``.

    ``lstsq``: least squares on one-hot targets with an intercept and a ridge
    ``eps * mean total variance`` (from ``stats``'s total scatter; needs ``full=True``);
    ``ncm``: nearest class mean (Euclidean)."""
    keep = np.asarray(keep, dtype=np.int64)
    x = np.asarray(x_val, np.float64)[:, keep]
    y = np.asarray(y_val).astype(np.int64)
    if len(y) == 0:
        raise DataError("probe_accuracy: no validation samples")
    means = stats.means[:, keep]
    present = stats.classes_present
    if probe == "ncm":
        d = ((x[:, None, :] - means[None, present, :]) ** 2).sum(-1)
        pred = present[np.argmin(d, axis=1)]
    elif probe == "lstsq":
        if not stats.full:
            raise ArgumentError("the lstsq probe needs ScatterStats(full=True)")
        n = stats.counts.astype(np.float64)
        mu = stats.mean[keep]
        st = stats.St[np.ix_(keep, keep)]
        b = ((means - mu) * n[:, None]).T  # X_c^T Y_c: (M', C); rows of absent classes are 0
        w = np.linalg.solve(st + _ridge(stats, eps) * np.eye(len(keep)), b)
        scores = (x - mu) @ w + n / n.sum()
        scores[:, n == 0] = -np.inf
        pred = np.argmax(scores, axis=1)
    else:
        raise ArgumentError(f"probe={probe!r}: choose one of {PROBES}")
    return float(np.mean(pred == y))


def _candidate_sizes(m: int, exhaustive_up_to: int = 128, grid: int = 64) -> list[int]:
    if m <= exhaustive_up_to:
        return list(range(1, m + 1))
    return sorted({int(round(k)) for k in np.geomspace(1, m, grid)} | {m})


@dataclass
class TopSelection:
    """The kept feature neurons and the sensitivity curve they were chosen from."""

    kept: np.ndarray  # indices of the top-M' neurons, best first
    sizes: list[int]  # candidate M' evaluated
    accuracies: list[float]  # validation accuracy of the probe on the top-M' neurons
    full_accuracy: float  # ... on every neuron
    tolerance: float


def select_top_features(
    utility: np.ndarray, stats: ScatterStats, x_val: np.ndarray, y_val: np.ndarray,
    tolerance: float = 0.01, probe: str = "lstsq", eps: float = 1e-3,
    sizes: Iterable[int] | None = None,
) -> TopSelection:
    """The smallest top-M' set of neurons (ranked by ``utility``, ties by index) whose probe
    accuracy on ``(x_val, y_val)`` is at least the all-neuron accuracy minus ``tolerance``.

    ``sizes``: the candidate M' (default every size up to 128 neurons, else 64 sizes spaced
    geometrically); the smallest passing candidate is chosen. Neurons of zero utility are never
    kept unless every neuron has zero utility."""
    u = np.asarray(utility, np.float64)
    if not 0 <= tolerance <= 1:
        raise ArgumentError(f"tolerance={tolerance!r}: give an accuracy difference in [0, 1]")
    order = np.argsort(-u, kind="stable")
    full = probe_accuracy(stats, np.arange(len(u)), x_val, y_val, probe, eps)
    useful = max(int(np.sum(u > 0)), 1)
    cands = sorted({min(int(k), useful) for k in (sizes or _candidate_sizes(len(u))) if int(k) >= 1})
    tried, accs = [], []
    chosen = useful
    for k in cands:
        acc = probe_accuracy(stats, order[:k], x_val, y_val, probe, eps)
        tried.append(k)
        accs.append(acc)
        if acc >= full - tolerance - 1e-12:
            chosen = k
            break
    return TopSelection(order[:chosen], tried, accs, full, tolerance)


# ---------------------------------------------------------------- 3. the deconv trace
@tf.custom_gradient
def _rectified_relu(x: Any) -> Any:
    """ReLU whose backward pass rectifies the incoming signal (Zeiler & Fergus's deconvnet)."""

    def grad(dy: Any) -> Any:
        return tf.nn.relu(dy)

    return tf.nn.relu(x), grad


@tf.custom_gradient
def _rectified_relu6(x: Any) -> Any:
    def grad(dy: Any) -> Any:
        return tf.nn.relu(dy)

    return tf.nn.relu6(x), grad


def _plain_relu(layer: keras.layers.ReLU) -> bool:
    return float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0


def _use_deconv_relu(model: keras.Model) -> int:
    """In place on ``model`` (a private copy): every ReLU rectifies the backward signal.
    Returns how many ReLUs were changed."""
    relu, relu6 = keras.activations.relu, keras.activations.relu6
    changed = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.ReLU) and _plain_relu(layer):
            mv = layer.max_value
            if mv is None:
                layer.call = lambda inputs: _rectified_relu(inputs)
            elif float(mv) == 6.0:
                layer.call = lambda inputs: _rectified_relu6(inputs)
            else:
                layer.call = lambda inputs, m=float(mv): tf.minimum(_rectified_relu(inputs), m)
            changed += 1
        elif getattr(layer, "activation", None) is relu:
            layer.activation = _rectified_relu
            changed += 1
        elif getattr(layer, "activation", None) is relu6:
            layer.activation = _rectified_relu6
            changed += 1
    return changed


def deconv_model(dep: DependencyGraph, layers: Iterable[str], feature_layer: str,
                 relu: str = "deconv") -> tuple[keras.Model, list[str]]:
    """A copy of ``dep``'s model returning ``[features, *activations]``: the feature layer's
    output and the output of each of ``layers`` found in it (their names, second value). With
    ``relu="deconv"`` every ReLU of the copy rectifies the backward signal."""
    if relu not in RELU_RULES:
        raise ArgumentError(f"relu={relu!r}: choose one of {RELU_RULES}")
    copy, _ = gated_model(dep, [], feature_layer=feature_layer)
    if relu == "deconv":
        _use_deconv_relu(copy)
    names, outs = [], []
    known = {la.name for la in copy.layers}
    for name in layers:
        if name not in known:
            continue
        try:
            out = copy.get_layer(name).output
        except (AttributeError, ValueError) as exc:
            raise UnsupportedModelError(
                f"layer {name!r} is called more than once; the deconv trace reads one output per "
                "layer. Use importance='gpp_grad' for models with shared layers.") from exc
        names.append(name)
        outs.append(out[0] if isinstance(out, list | tuple) else out)
    inputs = copy.inputs[0] if len(copy.inputs) == 1 else copy.inputs
    return keras.Model(inputs, [copy.outputs[-1], *outs], name="gpp_deconv"), names


def deconv_maps(
    model: keras.Model, names: list[str], weights: np.ndarray, batches: Iterable[tuple[Any, Any]]
) -> dict[str, np.ndarray]:
    """Mean over images of each layer's per-image deconv map.

    ``model`` is a :func:`deconv_model`; the trace starts from ``weights`` at the feature layer
    (the backward pass of ``sum_j weights_j f_j``). Returns ``{layer: map}`` with the map shaped
    like one image's activation (``(H, W, C)``, ``(T, C)`` or ``(C,)``); a layer the features
    do not depend on gets zeros."""
    w = tf.constant(np.asarray(weights, np.float32))
    sums: dict[str, np.ndarray] = {}
    count = 0
    for x, _ in batches:
        x = tf.nest.map_structure(tf.convert_to_tensor, x)
        with tf.GradientTape() as tape:
            # record every op, frozen layers included: watch the inputs and the weights
            tape.watch([t for t in tf.nest.flatten(x) if t.dtype.is_floating])
            tape.watch([v.value for v in model.weights])
            outs = model(x, training=False)
            feats, acts = outs[0], list(outs[1:])
            s = tf.reduce_sum(tf.cast(feats, tf.float32) * w)
        grads = tape.gradient(s, acts)
        n = int(feats.shape[0])
        for name, a, g in zip(names, acts, grads, strict=True):
            per_image = np.zeros(a.shape, np.float64) if g is None else np.asarray(g, np.float64)
            sums[name] = sums.get(name, 0.0) + per_image.sum(axis=0)
        count += n
    if count == 0:
        raise DataError("no images to trace the utility back from")
    return {name: s / count for name, s in sums.items()}


def channel_utility(mean_map: np.ndarray) -> np.ndarray:
    """A channel's utility: the maximum over spatial positions of its averaged map (CVIU
    Eq. 12); a negative maximum counts as 0 (scores are non-negative)."""
    m = np.asarray(mean_map, np.float64)
    flat = m.reshape(-1, m.shape[-1])
    return np.maximum(flat.max(axis=0), 0.0)


# ---------------------------------------------------------------- the importance
def _split_batches(
    batches: list[tuple[Any, Any]], fraction: float, seed: int
) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    """Hold out ``fraction`` of the samples of every batch (a seeded mask)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for x, y in batches:
        xs = tf.nest.map_structure(np.asarray, x)
        ys = tf.nest.map_structure(np.asarray, y)
        n = len(tf.nest.flatten(ys)[0])
        hold = rng.random(n) < fraction
        for part, mask in ((train, ~hold), (val, hold)):
            if mask.any():
                part.append((tf.nest.map_structure(lambda a, m=mask: a[m], xs),
                             tf.nest.map_structure(lambda a, m=mask: a[m], ys)))
    return train, val


class CVIUUtility(Importance):
    """The CVIU pipeline: Fisher utility, top-M' selection, per-image deconv trace with the max
    over positions of the image-averaged map (see the module docstring).

    Args:
        feature_layer: the last hidden layer (default :func:`~tf_gpp.discriminant.find_feature_layer`).
        images_per_class: N = this many training images of every class are traced (CVIU
            Fig. 18: one per class is nearly as good as all).
        tolerance: the top-M' set keeps the probe's validation accuracy within this much
            (absolute, default 0.01 = 1 point) of all feature neurons; ``None`` keeps every
            neuron (no selection).
        probe: ``"lstsq"`` (least-squares linear classifier, default) or ``"ncm"`` (nearest
            class mean), fitted on the frozen training features.
        validation_split: share of the data's samples held out to choose M' when no
            ``validation_data`` is given.
        validation_data: labelled data for the selection (any form ``fit`` accepts); not part
            of the config.
        relu: ``"deconv"`` (Zeiler & Fergus: rectify the backward signal) or ``"gradient"``
            (backprop's forward ReLU gates).
        eps: relative shrinkage of the Fisher ratio's within-class variance and of the probe.
        stats_batches: batches of 256 read for the statistics (``None``: all).
        output: the classifier output of a multi-output model.
        seed: seed of the held-out split.
    """

    name = "gpp"
    requires_data = True

    def __init__(
        self,
        feature_layer: str | None = None,
        images_per_class: int = 8,
        tolerance: float | None = 0.01,
        probe: str = "lstsq",
        validation_split: float = 0.2,
        validation_data: Any = None,
        relu: str = "deconv",
        eps: float = 1e-3,
        stats_batches: int | None = None,
        output: str | None = None,
        seed: int = 0,
    ) -> None:
        if probe not in PROBES:
            raise ArgumentError(f"CVIUUtility(probe={probe!r}): choose one of {PROBES}")
        if relu not in RELU_RULES:
            raise ArgumentError(f"CVIUUtility(relu={relu!r}): choose one of {RELU_RULES}")
        if tolerance is not None and not 0 <= tolerance <= 1:
            raise ArgumentError(f"CVIUUtility(tolerance={tolerance!r}): give a value in [0, 1] or None")
        if not 0 < validation_split < 1:
            raise ArgumentError(f"CVIUUtility(validation_split={validation_split!r}): give a value in (0, 1)")
        if int(images_per_class) < 1:
            raise ArgumentError(f"CVIUUtility(images_per_class={images_per_class!r}): give a whole number >= 1")
        self.feature_layer = feature_layer
        self.images_per_class = int(images_per_class)
        self.tolerance = tolerance
        self.probe = probe
        self.validation_split = float(validation_split)
        self.validation_data = validation_data
        self.relu = relu
        self.eps = eps
        self.stats_batches = stats_batches
        self.output = output
        self.seed = seed
        self.final_utility: np.ndarray | None = None
        self.selection: TopSelection | None = None
        self.maps: dict[str, np.ndarray] = {}
        self._scores: dict[str, np.ndarray] = {}

    def _features(self, feats: keras.Model, batches: list[tuple[Any, Any]], task: TaskInfo
                  ) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for x, y in batches:
            xs.append(np.asarray(feats(x, training=False), np.float64))
            ys.append(task.class_indices(y))
        return np.concatenate(xs), np.concatenate(ys)

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        if data is None:
            raise DataError("importance 'gpp' needs labelled data (x, y) to measure the discriminant utility")
        fmodel = dep.graph.model
        batches, task = labelled_batches(fmodel, data, batch_size=256, max_batches=self.stats_batches,
                                         output=self.output)
        feature = self.feature_layer or find_feature_layer(fmodel, output=task.output)
        feats = feature_model(fmodel, feature)
        select = self.tolerance is not None
        if select and self.validation_data is not None:
            train = batches
            val, _ = labelled_batches(fmodel, self.validation_data, batch_size=256, output=self.output)
        elif select:
            train, val = _split_batches(batches, self.validation_split, self.seed)
        else:
            train, val = batches, []
        stats = ScatterStats(task.num_classes, full=self.probe == "lstsq")
        for x, y in train:
            stats.update(np.asarray(feats(x, training=False)), task.class_indices(y))
        v = neuron_utility(stats, "fisher", self.eps)
        if not v.sum() > 0:
            raise DataError(
                f"feature layer {feature!r} carries no discriminant information on this data (every "
                "neuron is constant or class-blind), so there is nothing to trace back; train the "
                "model first, or check that the inputs vary and the labels match them."
            )
        self.final_utility = v
        if val:
            xv, yv = self._features(feats, val, task)
            self.selection = select_top_features(v, stats, xv, yv, self.tolerance or 0.0, self.probe, self.eps)
            kept = self.selection.kept
        else:
            self.selection = None
            kept = np.nonzero(v > 0)[0]
        w = np.zeros_like(v)
        w[kept] = v[kept]
        w /= w.sum()
        producers = sorted({p for g in dep.groups for p in g.producers})
        net, names = deconv_model(dep, producers, feature, self.relu)
        sample = per_class_sample(batches, task, self.images_per_class)
        self.maps = deconv_maps(net, names, w, sample)
        self._scores = {name: channel_utility(m) for name, m in self.maps.items()}

    def channel_scores(self, layer: str) -> np.ndarray | None:
        return self._scores.get(layer)

    def get_config(self) -> dict:
        return {
            "feature_layer": self.feature_layer,
            "images_per_class": self.images_per_class,
            "tolerance": self.tolerance,
            "probe": self.probe,
            "validation_split": self.validation_split,
            "relu": self.relu,
            "eps": self.eps,
            "stats_batches": self.stats_batches,
            "output": self.output,
            "seed": self.seed,
        }
