"""Pruner.step: score, plan, rebuild, recalibrate BatchNorm — never train, never touch the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_cnn, digits_split
from tf_gpp.prune import Constraints, Geometric, Pruner, Threshold, schedules


@pytest.fixture(scope="module")
def trained():
    return digits_cnn(epochs=3)


def _kept(model: keras.Model, plan: dict, layer: str) -> np.ndarray:
    """Output channels of ``layer`` the plan keeps, from the original model's groups."""
    size = model.get_layer(layer).kernel.shape[-1]
    gone: set[int] = set()
    for group in tf_gpp.channel_groups(model):
        if layer in group.layers:
            for u in plan.get(group.index, []):
                gone.update(group.channels(layer)[u].tolist())
    return np.array([c for c in range(size) if c not in gone])


def test_step_meets_target_keeps_weights_and_model(trained):
    (xt, yt), _ = digits_split()
    before = [w.copy() for w in trained.get_weights()]
    base = tf_gpp.profile(trained)
    result = Pruner(trained, importance="gpp_lda", round_to=4).step((xt[:512], yt[:512]), target_macs=0.5)
    slim = result.model
    assert result.macs <= 0.5 * base.macs and result.base_macs == base.macs
    assert (tf_gpp.profile(slim).macs, tf_gpp.profile(slim).params) == (result.macs, result.params)
    assert all(slim.get_layer(n).kernel.shape[-1] % 4 == 0 for n in ("c1", "c2", "c3", "fc"))
    k1, k2 = _kept(trained, result.plan, "c1"), _kept(trained, result.plan, "c2")
    assert len(k2) < 64
    np.testing.assert_array_equal(slim.get_layer("c2").kernel, np.asarray(trained.get_layer("c2").kernel)[:, :, k1][..., k2])
    np.testing.assert_array_equal(slim.get_layer("bn2").gamma, np.asarray(trained.get_layer("bn2").gamma)[k2])
    assert all(np.array_equal(a, b) for a, b in zip(before, trained.get_weights(), strict=True))
    assert slim.optimizer is None or slim.optimizer.iterations.numpy() == 0  # never trained


def test_step_recalibrates_batchnorm_on_the_data(trained):
    (xt, yt), _ = digits_split()
    x = xt[:256]
    result = Pruner(trained, importance="l1", recalibrate_steps=4).step((x, yt[:256]), target_macs=0.6)
    slim = result.model
    # Reference by hand: the mean over the 4 batches of 64 of each batch's mean / biased variance of
    # bn1's input in the slim model (bn1 normalises c1's output; nothing upstream is BN).
    feats = np.asarray(keras.Model(slim.inputs[0], slim.get_layer("c1").output)(x, training=False))
    batches = feats.reshape(4, 64, -1, feats.shape[-1])
    np.testing.assert_allclose(slim.get_layer("bn1").moving_mean, batches.mean(axis=(1, 2)).mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(slim.get_layer("bn1").moving_variance, batches.var(axis=(1, 2)).mean(0), rtol=1e-3, atol=1e-5)
    k1 = _kept(trained, result.plan, "c1")
    assert not np.allclose(slim.get_layer("bn1").moving_mean, np.asarray(trained.get_layer("bn1").moving_mean)[k1])


def test_geometric_rounds_continue_from_the_last_model(trained):
    (xt, yt), _ = digits_split()
    pruner = Pruner(trained, importance="l1", constraints=Constraints(min_channels=2))
    base = tf_gpp.profile(trained).macs
    macs = []
    for r in (1, 2, 3):
        result = pruner.step((xt[:256], yt[:256]), target_macs=0.3, schedule=Geometric(rounds=3))
        assert result.round == r and pruner.model is result.model
        assert result.macs <= base * 0.3 ** (r / 3) + 1
        macs.append(result.macs)
    assert macs[0] > macs[1] > macs[2]
    assert tf_gpp.profile(pruner.model).macs == macs[-1] <= 0.3 * base


def test_threshold_schedule_raises_eta_each_round(trained):
    """The paper's rule on its own utility (discriminant utilities are skewed: many near 0)."""
    (xt, yt), _ = digits_split()
    data = (xt[:256], yt[:256])
    pruner = Pruner(trained, importance="gpp_lda", min_channels=2)
    schedule = Threshold(eta=0.25, eta_step=0.25)
    first = pruner.step(data, schedule=schedule)
    second = pruner.step(data, schedule=schedule)  # round 2: eta 0.5
    assert first.removed_units > 0 and first.model is not trained
    assert schedule.eta_at(2) == 0.5 and Threshold().eta_at(1) == 0.5
    assert second.base_macs == first.base_macs and second.macs < first.macs


def test_schedules_are_serialisable_objects():
    for s in (Geometric(rounds=4), Threshold(eta=0.25, eta_step=0.1), Geometric()):
        again = schedules.get(schedules.serialize(s))
        assert again == s and type(again).from_config(s.get_config()) == s
    assert schedules.get(None) == Geometric() and schedules.get("threshold") == Threshold()
    with pytest.raises(tf_gpp.ArgumentError, match="unknown pruning schedule"):
        schedules.get("cosine")
    with pytest.raises(tf_gpp.ArgumentError, match="rounds"):
        Geometric(rounds=0)
    assert schedules.resolve_target(0.5, 1000, "target_macs") == 500
    assert schedules.resolve_target(300, 1000, "target_macs") == 300


def test_refusals(trained):
    with pytest.raises(tf_gpp.ArgumentError, match="not both"):
        Pruner(trained, constraints=Constraints(), round_to=4)
    with pytest.raises(tf_gpp.ArgumentError, match="target_macs"):
        Pruner(trained, importance="l1").step()
    with pytest.raises(tf_gpp.PruningRequestError, match="target_macs"):
        Pruner(trained, importance="l1").step(target_macs=-1)
    with pytest.raises(tf_gpp.ArgumentError, match="end_epoch"):
        tf_gpp.PruningCallback(target_macs=0.5, start_epoch=3, end_epoch=1)


def test_a_pruner_built_from_a_pruned_model_its_base_and_round_continues_the_run(trained, tmp_path):
    """Pruner(model, base=, round=) continues where another pruner stopped: the same second step
    (plan, widths, weights) as one pruner taking both steps, from the first step's model saved
    and reloaded (nothing of the first pruner shared)."""
    (xt, yt), _ = digits_split()
    data, sched = (xt[:256], yt[:256]), Geometric(rounds=2)
    whole = Pruner(trained, importance="l1", recalibrate_steps=0)
    first = whole.step(data, target_macs=0.3, schedule=sched)
    second = whole.step(data, target_macs=0.3, schedule=sched)
    first.model.save(tmp_path / "round1.keras")
    again = Pruner(keras.models.load_model(tmp_path / "round1.keras"), importance="l1", recalibrate_steps=0,
                   base=schedules.Cost(params=first.base_params, macs=first.base_macs), round=1)
    step = again.step(data, target_macs=0.3, schedule=sched)
    assert step.plan == second.plan and step.round == 2 and (step.macs, step.params) == (second.macs, second.params)
    for a, b in zip(step.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    at_round_0 = Pruner(keras.models.load_model(tmp_path / "round1.keras"), importance="l1", recalibrate_steps=0,
                        base=schedules.Cost(params=first.base_params, macs=first.base_macs))
    assert at_round_0.step(data, target_macs=0.3, schedule=sched).plan == {}  # round 1's target: met already
    assert again.continue_from(second.model, round=5).round == 5 and again.model is second.model
    with pytest.raises(tf_gpp.ArgumentError, match="round=-1"):
        Pruner(trained, round=-1)
