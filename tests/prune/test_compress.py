import json

import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_cnn, digits_split


@pytest.fixture(scope="module")
def base():
    return digits_cnn(epochs=12)


def test_digits_compressed_to_30_percent_macs_within_2_points(base, tmp_path_factory):
    """Issue 3 goal: a small CNN on digits to <= 30% of its MACs, losing <= 2 points."""
    train, val = digits_split()
    ckpt = tmp_path_factory.mktemp("ckpt")
    res = tf_gpp.compress(base, train, val, target_macs=0.3, rounds=3, push_epochs=1,
                          finetune_epochs=3, checkpoint_dir=ckpt, seed=0, verbose=0)
    print(res.summary())
    assert res.model is res.smallest_within_tolerance
    last = res.history[-1]
    assert last.macs_ratio <= 0.30
    assert last.accuracy >= res.base_accuracy - 0.02
    assert tf_gpp.profile(res.model).macs == last.macs
    # each round was checkpointed; a second call resumes instead of recomputing
    state = json.loads((ckpt / "state.json").read_text())
    assert len(state["history"]) == len(res.history) and state["done"]
    again = tf_gpp.compress(base, train, val, target_macs=0.3, rounds=3, checkpoint_dir=ckpt, verbose=0)
    assert [h.accuracy for h in again.history] == [h.accuracy for h in res.history]
    x = val[0][:8]
    np.testing.assert_allclose(again.model.predict(x, verbose=0), res.model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_compress_bad_arguments(base):
    train, val = digits_split()
    with pytest.raises(ValueError, match="target_macs or target_params"):
        tf_gpp.compress(base, train, val, verbose=0)
    with pytest.raises(tf_gpp.PruningRequestError, match="target_macs=0"):
        tf_gpp.compress(base, train, val, target_macs=0, verbose=0)
    with pytest.raises(tf_gpp.DataError, match="empty"):
        tf_gpp.compress(base, (train[0][:0], train[1][:0]), val, target_macs=0.5, verbose=0)
    with pytest.raises(ValueError, match="strategy"):
        tf_gpp.compress(base, train, val, target_macs=0.5, strategy="magic", verbose=0)


def test_compress_leaves_the_users_model_alone(base):
    train, val = digits_split()
    before = [w.copy() for w in base.get_weights()]
    optimizer = base.optimizer
    tf_gpp.compress(base, train, val, target_macs=0.8, rounds=1, push_epochs=1, finetune_epochs=1, verbose=0)
    for a, b in zip(base.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert base.optimizer is optimizer
