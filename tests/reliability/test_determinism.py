"""Same seed, same result: the pruning plan, the slim model's widths, weights and predictions.

``compress`` seeds Keras, NumPy and TF itself (``keras.utils.set_random_seed(seed)``, then
``seed + r`` each round) and shuffles array data with that seed, so a run does not depend on
the random state the caller left behind; these tests scramble that state between runs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_split
from tf_gpp.importance import GPPUtility, RandomImportance
from tf_gpp.prune.planner import Constraints, group_scores, plan_global


@pytest.fixture(scope="module")
def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    (xt, yt), (xv, yv) = digits_split()
    return (xt[:400], yt[:400]), (xv[:200], yv[:200])


@pytest.fixture(scope="module")
def base(data) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="out")(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*data[0], epochs=3, batch_size=32, verbose=0)
    return model


def _scramble() -> None:
    """Leave the global random state somewhere else than the previous run left it."""
    keras.utils.set_random_seed(12345)
    np.random.rand(7)
    keras.random.uniform((3,))


def _widths(model: keras.Model) -> dict[str, int]:
    return {layer.name: int(layer.output.shape[-1]) for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)}


def _compress(base: keras.Model, data, seed: int, **kwargs) -> tf_gpp.CompressResult:
    _scramble()
    train, val = data
    args = {"target_macs": 0.5, "rounds": 1, "push_epochs": 1, "finetune_epochs": 1, "batch_size": 32,
            "verbose": 0, **kwargs}
    return tf_gpp.compress(base, train, val, seed=seed, **args)


def _assert_same_model(a: keras.Model, b: keras.Model, x: np.ndarray) -> None:
    assert _widths(a) == _widths(b)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recipe", [{}, {"importance": "gpp_lda", "push": True}], ids=["default", "gpp_push"])
def test_compress_same_seed_same_slim_model(base, data, recipe):
    """The default recipe (Taylor + distilled fine-tuning) and GPP (push + gpp_lda): same seed ->
    same widths, weights, predictions (and the same pushed model)."""
    first = _compress(base, data, seed=3, **recipe)
    second = _compress(base, data, seed=3, **recipe)
    assert first.history[0].removed_units == second.history[0].removed_units > 0
    assert first.history[0].accuracy == second.history[0].accuracy
    _assert_same_model(first.model, second.model, data[1][0][:64])
    if recipe.get("push"):
        _assert_same_model(first.pushed_model, second.pushed_model, data[1][0][:64])
    else:
        assert first.pushed_model is None


def _plan(base: keras.Model, importance, data=None) -> dict[int, list[int]]:
    dep = tf_gpp.DependencyGraph(base)
    importance.prepare(base, dep, data)
    scores = group_scores(dep, importance)
    return plan_global(dep, scores, Constraints(), target_macs=int(0.5 * tf_gpp.profile(base).macs))


def test_importance_and_planner_are_deterministic(base, data):
    _scramble()
    first = _plan(base, GPPUtility(utility="lda"), data[0])
    _scramble()
    second = _plan(base, GPPUtility(utility="lda"), data[0])
    assert first == second and sum(len(v) for v in first.values()) > 0


def test_random_importance_seeds(base):
    same = [_plan(base, RandomImportance(seed=1)) for _ in range(2)]
    assert same[0] == same[1]
    assert _plan(base, RandomImportance(seed=1)) != _plan(base, RandomImportance(seed=2))
    # seed=None follows keras.utils.set_random_seed, as compress(seed=...) sets it
    plans = []
    for seed in (5, 5, 6):
        keras.utils.set_random_seed(seed)
        plans.append(_plan(base, RandomImportance()))
    assert plans[0] == plans[1] != plans[2]


def test_compress_random_importance_follows_the_seed(base, data):
    quick = {"importance": "random", "push": False, "finetune_epochs": 0}
    a, b, c = (_compress(base, data, seed=s, **quick).model for s in (1, 1, 2))
    _assert_same_model(a, b, data[1][0][:32])
    differs = _widths(a) != _widths(c) or any(
        wa.shape != wc.shape or not np.allclose(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True)
    )
    assert differs, "different seeds must choose different channels with importance='random'"
