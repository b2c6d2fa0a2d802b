"""importance="gpp", the CVIU pipeline, against references computed by hand with NumPy:
Fisher utility, top-M' selection, the per-image deconv trace (max over positions of the
image-averaged map) and the per-layer eta*std threshold; then end to end through Pruner and
compress."""

import keras
import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_cnn, digits_split
from tf_gpp.discriminant import ScatterStats, neuron_utility
from tf_gpp.graph import DependencyGraph
from tf_gpp.importance import CVIUUtility, get_importance
from tf_gpp.importance.cviu import (
    channel_utility,
    deconv_maps,
    deconv_model,
    probe_accuracy,
    select_top_features,
)
from tf_gpp.prune import Constraints, Threshold, plan_threshold


# ------------------------------------------------------------------ NumPy references
def np_fisher(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sigma_b^2 / sigma_w^2 per column, 0 where the column is constant."""
    mu = x.mean(0)
    sb = np.zeros(x.shape[1])
    sw = np.zeros(x.shape[1])
    for c in np.unique(y):
        xc = x[y == c]
        sb += len(xc) * (xc.mean(0) - mu) ** 2
        sw += ((xc - xc.mean(0)) ** 2).sum(0)
    out = np.zeros_like(sb)
    live = (sb + sw) > 0
    out[live] = sb[live] / sw[live]
    return out


def np_lstsq_accuracy(xt, yt, xv, yv, ridge, classes):
    """Least squares on one-hot targets with an unpenalised intercept, solved on the raw rows."""
    y1 = np.eye(classes)[yt]
    a = np.hstack([xt, np.ones((len(xt), 1))])
    reg = ridge * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    beta = np.linalg.solve(a.T @ a + reg, a.T @ y1)
    pred = np.argmax(np.hstack([xv, np.ones((len(xv), 1))]) @ beta, axis=1)
    return float(np.mean(pred == yv))


def np_conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'same' 3x3 convolution (cross-correlation, as Keras), one image (H, W, Cin)."""
    h, w, _ = x.shape
    kh, kw, _, cout = k.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, cout))
    for i in range(h):
        for j in range(w):
            for o in range(cout):
                out[i, j, o] = np.sum(xp[i:i + kh, j:j + kw, :] * k[..., o]) + b[o]
    return out


def np_conv_transpose_same(z: np.ndarray, k: np.ndarray) -> np.ndarray:
    """U = F^T Z for the 'same' 3x3 convolution above: each output position's signal goes back
    to the input positions and channels its filter read."""
    h, w, _ = z.shape
    kh, kw, cin, _ = k.shape
    up = np.zeros((h + 2, w + 2, cin))
    for i in range(h):
        for j in range(w):
            up[i:i + kh, j:j + kw, :] += np.einsum("abio,o->abi", k, z[i, j])
    return up[1:-1, 1:-1, :]


def np_maxpool_switches(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pooling of (H, W, C) and the switch mask (1 at each window's max)."""
    h, w, c = a.shape
    pooled = np.zeros((h // 2, w // 2, c))
    switch = np.zeros_like(a)
    for i in range(h // 2):
        for j in range(w // 2):
            for ch in range(c):
                win = a[2 * i:2 * i + 2, 2 * j:2 * j + 2, ch]
                r, s = np.unravel_index(np.argmax(win), win.shape)
                pooled[i, j, ch] = win[r, s]
                switch[2 * i + r, 2 * j + s, ch] = 1.0
    return pooled, switch


# ------------------------------------------------------------------ the tiny network
K1 = np.array([[[[1.0, -0.5]], [[0.5, 0.25]], [[-0.25, 1.0]]],
               [[[0.75, 0.5]], [[-1.0, 0.5]], [[0.25, -0.75]]],
               [[[0.5, 1.0]], [[0.25, -0.5]], [[1.0, 0.5]]]])  # (3, 3, 1, 2)
B1 = np.array([0.1, -0.1])
K2 = np.round(np.random.default_rng(7).uniform(-1, 1, (3, 3, 2, 3)) * 4) / 4  # quarters in [-1, 1]
B2 = np.array([0.05, 0.0, -0.05])
WOUT = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0], [-0.5, 0.5, 1.0]])


def tiny_net() -> keras.Model:
    """conv(2, relu) -> conv(3, relu) -> maxpool 2x2 -> GAP (the 3 features) -> Dense(3)."""
    inp = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    m.get_layer("c1").set_weights([K1.astype("float32"), B1.astype("float32")])
    m.get_layer("c2").set_weights([K2.astype("float32"), B2.astype("float32")])
    m.get_layer("out").set_weights([WOUT.astype("float32"), np.zeros(3, "float32")])
    return m


def tiny_data(n_per_class: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), n_per_class)
    x = rng.uniform(0, 1, (len(y), 4, 4, 1))
    x[y == 1, :2] += 1.0  # classes differ by where the bright rows are
    x[y == 2, 2:] += 1.0
    return x.astype("float32"), y.astype("int32")


def np_trace(x: np.ndarray, w: np.ndarray, rule: str) -> tuple[dict, np.ndarray]:
    """Features, and each layer's deconv map averaged over the images, by hand."""
    maps = {"c1": 0.0, "c2": 0.0}
    feats = []
    for img in x.astype(np.float64):
        a1 = np.maximum(np_conv_same(img, K1, B1), 0)
        p2 = np_conv_same(a1, K2, B2)
        a2 = np.maximum(p2, 0)
        pooled, switch = np_maxpool_switches(a2)
        feats.append(pooled.mean((0, 1)))
        u2 = switch * (w / pooled.shape[0] / pooled.shape[1])  # GAP^T, then unpool at the switches
        r2 = np.maximum(u2, 0) if rule == "deconv" else u2 * (p2 > 0)  # c2's ReLU
        u1 = np_conv_transpose_same(r2, K2)  # c2^T: the map at c1's output
        maps["c2"] = maps["c2"] + u2
        maps["c1"] = maps["c1"] + u1
    return {k: v / len(x) for k, v in maps.items()}, np.array(feats)


# ------------------------------------------------------------------ 1. Fisher utility
def test_fisher_utility_matches_numpy_and_zero_variance_gets_zero():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 7)
    x = rng.normal(size=(21, 5))
    x[:, 1] += 2.0 * y
    x[:, 4] = 3.0  # constant neuron
    stats = ScatterStats.from_arrays(x, y, num_classes=3, full=False)
    v = neuron_utility(stats, "fisher", eps=0.0)
    np.testing.assert_allclose(v, np_fisher(x, y), rtol=1e-10)
    assert v[4] == 0.0 and v.argmax() == 1


# ------------------------------------------------------------------ 2. top-M' selection
def _two_needed(n: int = 300, seed: int = 0):
    """Neuron 0 tells class 0 from the rest, neuron 1 class 1 from the rest: each alone reaches
    about 2/3, both together all; neurons 2-5 are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(scale=0.2, size=(n, 6))
    x[:, 0] += 3.0 * (y == 0)
    x[:, 1] += 3.0 * (y == 1)
    return x, y


def test_probe_accuracy_matches_numpy_least_squares_and_nearest_mean():
    xt, yt = _two_needed(seed=0)
    xv, yv = _two_needed(n=120, seed=1)
    xv[:, 2:] *= 10  # noise neurons louder on validation, so subsets differ
    stats = ScatterStats.from_arrays(xt, yt, num_classes=3)
    for keep in ([0], [0, 1], [0, 1, 2, 3, 4, 5], [2, 4]):
        ridge = 1e-3 * float((np.var(xt, axis=0) * len(xt)).mean())
        ref = np_lstsq_accuracy(xt[:, keep], yt, xv[:, keep], yv, ridge, 3)
        assert probe_accuracy(stats, np.array(keep), xv, yv, "lstsq") == pytest.approx(ref, abs=1e-12)
        means = np.stack([xt[yt == c][:, keep].mean(0) for c in range(3)])
        ncm = np.argmin(((xv[:, keep][:, None, :] - means[None]) ** 2).sum(-1), axis=1)
        assert probe_accuracy(stats, np.array(keep), xv, yv, "ncm") == pytest.approx(np.mean(ncm == yv))


@pytest.mark.parametrize("probe", ["lstsq", "ncm"])
def test_top_m_selection_keeps_the_smallest_sufficient_top_set(probe):
    xt, yt = _two_needed(seed=0)
    xv, yv = _two_needed(n=150, seed=1)
    stats = ScatterStats.from_arrays(xt, yt, num_classes=3)
    v = np_fisher(xt, yt)
    assert set(np.argsort(-v)[:2]) == {0, 1}
    sel = select_top_features(v, stats, xv, yv, tolerance=0.01, probe=probe)
    # by hand: one neuron reaches about 2/3, the top two all of it
    assert sel.full_accuracy == 1.0
    assert sel.sizes == [1, 2] and sel.accuracies[0] < 0.8 and sel.accuracies[1] == 1.0
    assert sorted(sel.kept.tolist()) == [0, 1]
    loose = select_top_features(v, stats, xv, yv, tolerance=0.5, probe=probe)
    assert loose.kept.tolist() == [int(np.argmax(v))]


def test_top_m_selection_never_keeps_zero_utility_neurons():
    xt, yt = _two_needed(seed=0)
    stats = ScatterStats.from_arrays(xt, yt, num_classes=3)
    v = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # only neuron 5 (noise) has utility
    sel = select_top_features(v, stats, xt, yt, tolerance=0.0)
    assert sel.kept.tolist() == [5]


# ------------------------------------------------------------------ 3. the deconv trace
@pytest.mark.parametrize("rule", ["deconv", "gradient"])
def test_deconv_maps_match_the_hand_computed_transposed_pass(rule):
    m = tiny_net()
    x, _ = tiny_data()
    w = np.array([0.5, 0.2, 0.3])
    net, names = deconv_model(DependencyGraph(m), ["c1", "c2"], "gap", relu=rule)
    assert names == ["c1", "c2"]
    maps = deconv_maps(net, names, w, [(x[:5], None), (x[5:], None)])  # two batches: 12 images
    ref, feats = np_trace(x, w, rule)
    np.testing.assert_allclose(np.asarray(net(x)[0]), feats, rtol=1e-5, atol=1e-6)
    for name in ("c1", "c2"):
        assert maps[name].shape == ref[name].shape
        np.testing.assert_allclose(maps[name], ref[name], rtol=1e-5, atol=1e-7)
        # max over the positions of the averaged map, negatives -> 0
        expect = np.maximum(ref[name].reshape(-1, ref[name].shape[-1]).max(0), 0)
        np.testing.assert_allclose(channel_utility(maps[name]), expect, rtol=1e-5, atol=1e-7)
    assert np.any(ref["c1"] < 0)  # the map is the signed back-projected signal
    if rule == "deconv":  # the rectification differs from backprop's forward gates here
        assert not np.allclose(ref["c1"], np_trace(x, w, "gradient")[0]["c1"])


def test_the_deconv_copy_leaves_the_users_model_alone():
    m = tiny_net()
    x, _ = tiny_data()
    before = np.asarray(m(x))
    deconv_model(DependencyGraph(m), ["c1", "c2"], "gap")
    assert m.get_layer("c1").activation is keras.activations.relu
    np.testing.assert_array_equal(np.asarray(m(x)), before)


def test_cviu_utility_end_to_end_on_the_tiny_net():
    """Fisher utility of the GAP features -> (no selection) -> trace over every image -> max."""
    m = tiny_net()
    x, y = tiny_data()
    dep = DependencyGraph(m)
    imp = CVIUUtility(tolerance=None, images_per_class=4, eps=0.0)
    imp.prepare(m, dep, (x, y))
    _, feats = np_trace(x, np.ones(3), "deconv")
    v = np_fisher(feats, y)
    np.testing.assert_allclose(imp.final_utility, v, rtol=1e-4)
    ref, _ = np_trace(x, v / v.sum(), "deconv")
    for g in dep.groups:
        (layer,) = g.producers
        expect = np.maximum(ref[layer].reshape(-1, ref[layer].shape[-1]).max(0), 0)
        np.testing.assert_allclose(imp(dep, g), expect, rtol=1e-4, atol=1e-7)


def test_only_the_kept_final_dimensions_are_traced():
    xt, yt = _two_needed(n=240)
    inp = keras.Input((6,))
    h = keras.layers.Dense(6, kernel_initializer="identity", use_bias=False, name="h")(inp)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    dep = DependencyGraph(m)
    imp = get_importance({"class_name": "gpp", "config": {"tolerance": 0.02, "probe": "ncm"}})
    imp.prepare(m, dep, (xt.astype("float32"), yt))
    assert sorted(imp.selection.kept.tolist()) == [0, 1]
    (group,) = dep.groups
    s = imp(dep, group)
    v = imp.final_utility
    # the feature layer's map is the kept utilities themselves (normalised), the rest 0
    np.testing.assert_allclose(s[[0, 1]], v[[0, 1]] / v[[0, 1]].sum(), rtol=1e-5)
    assert np.all(s[2:] == 0)


# ------------------------------------------------------------------ 4. eta * std per layer
def test_threshold_plan_is_eta_times_std_of_the_non_zero_scores():
    m = tiny_net()
    dep = DependencyGraph(m)
    scores = {g.index: s for g, s in zip(dep.groups, [np.array([0.0, 2.0]), np.array([0.0, 1.0, 3.0])],
                                          strict=True)}
    plan = plan_threshold(dep, scores, eta=1.0, constraints=Constraints())
    for g in dep.groups:  # by hand: t = eta * std over the non-zero scores
        s = scores[g.index]
        t = 1.0 * np.std(s[s != 0])
        assert plan.get(g.index, []) == [i for i in range(len(s)) if s[i] < t]
    # c1: the std of [2] is 0, nothing is below 0 (with the zero counted: t = 1, unit 0 would go);
    # c2: t = std([1, 3]) = 1 removes unit 0 only (with the zero: t = 1.25, units 0 and 1)
    assert plan == {1: [0]}
    sched = Threshold(eta=0.1, eta_step=0.1)
    assert [round(sched.eta_at(r), 10) for r in (1, 2, 3)] == [0.1, 0.2, 0.3]


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def digits():
    return digits_cnn(epochs=3), digits_split()


def test_pruner_step_with_gpp(digits):
    model, ((xt, yt), _) = digits
    res = tf_gpp.Pruner(model, importance="gpp").step((xt[:600], yt[:600]), target_macs=0.5)
    assert res.macs <= 0.5 * res.base_macs and res.removed_units > 0
    assert np.all(np.isfinite(np.asarray(res.model(xt[:8]))))


def test_compress_with_gpp_and_the_threshold_strategy(digits):
    model, ((xt, yt), (xv, yv)) = digits
    res = tf_gpp.compress(model, (xt, yt), (xv, yv), importance="gpp", strategy="threshold", rounds=2,
                          eta=0.1, eta_step=0.1, finetune_epochs=1, verbose=0)
    assert len(res.history) >= 1
    assert res.history[-1].macs_ratio < 1.0
    assert all(np.isfinite(r.accuracy) for r in res.history)


def test_residual_concat_and_frozen_models_are_traced():
    """Coupled channels (Add, Concatenate) get finite non-negative utilities, and a frozen model
    (trainable=False, the transfer-learning case) is traced like a trainable one."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(a)
    h = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Conv2D(3, 1, activation="relu", name="c")(h)
    h = keras.layers.Concatenate(name="cat")([h, c])
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.normal(size=(60, 6, 6, 2)) + y[:, None, None, None]).astype("float32")
    scores = []
    for trainable in (True, False):
        m.trainable = trainable
        dep = DependencyGraph(m)
        imp = CVIUUtility(tolerance=None)
        imp.prepare(m, dep, (x, y))
        s = {tuple(g.producers): imp(dep, g) for g in dep.groups}
        assert all(np.all(np.isfinite(v)) and np.all(v >= 0) for v in s.values())
        assert any(v.sum() > 0 for v in s.values())
        scores.append(s)
    for k in scores[0]:
        np.testing.assert_allclose(scores[0][k], scores[1][k], rtol=1e-6)
    # the Add group sums its two producers' maps
    (add_group,) = [g for g in dep.groups if set(g.producers) == {"a", "b"}]
    expect = channel_utility(imp.maps["a"]) + channel_utility(imp.maps["b"])
    np.testing.assert_allclose(imp(dep, add_group), expect, rtol=1e-6)
