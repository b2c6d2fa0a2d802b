"""compress(max_pruning_ratio=...): over all rounds, every layer keeps its share of the user's
model (widths read from the original, saved and reloaded); a checkpoint records the option unless
it is 1 (no limit, as before the option), and a resumed run keeps the share of the original,
not of the last round."""

import json

import keras
import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_cnn, digits_split
from tf_gpp.prune import CompressConfig

QUICK = {"target_macs": 0.12, "rounds": 2, "finetune_epochs": 1, "final_finetune_epochs": 1, "verbose": 0}


def _widths(model):
    return {layer.name: layer.get_config().get("filters") or layer.get_config()["units"]
            for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)}


def test_every_layer_keeps_its_share_over_all_rounds_and_resumes(tmp_path):
    base = digits_cnn(epochs=2)
    base.save(tmp_path / "original.keras")
    original = _widths(keras.models.load_model(tmp_path / "original.keras"))
    floors = {name: int(np.ceil(0.3 * w)) for name, w in original.items()}
    train, val = digits_split()
    free = tf_gpp.compress(base, train, val, max_pruning_ratio=1.0, **QUICK)
    assert any(w < floors[n] for n, w in _widths(free.model).items())  # without the limit some layer goes below
    res = tf_gpp.compress(base, train, val, max_pruning_ratio=0.7, checkpoint_dir=tmp_path / "ck", **QUICK)
    widths = _widths(res.model)
    assert all(widths[n] >= floors[n] for n in floors), (widths, floors)
    assert res.history[-1].macs_ratio <= 0.12
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["recipe"]["max_pruning_ratio"] == 0.7
    # resume after round 1: the last round is re-run from the round-1 model, floors still of the original
    state["history"] = state["history"][:1]
    state["done"] = False
    (tmp_path / "ck" / "state.json").write_text(json.dumps(state))
    again = tf_gpp.compress(base, train, val, max_pruning_ratio=0.7, checkpoint_dir=tmp_path / "ck", **QUICK)
    assert _widths(again.model) == widths


def test_a_checkpoint_from_before_the_option_resumes_only_without_a_limit(tmp_path):
    """A run checkpointed before max_pruning_ratio existed had no limit: it resumes with
    max_pruning_ratio=1 and is refused with the new default 0.9, the message naming both."""
    base = digits_cnn(epochs=2)
    train, val = digits_split()
    quick = {**QUICK, "rounds": 1, "target_macs": 0.5}
    first = tf_gpp.compress(base, train, val, max_pruning_ratio=1.0, checkpoint_dir=tmp_path, **quick)
    state = json.loads((tmp_path / "state.json").read_text())
    for added in ("max_pruning_ratio", "optimizer"):
        del state["recipe"][added]  # as an older tf_gpp wrote it
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(tf_gpp.PruningRequestError, match=r"max_pruning_ratio=1.0 there, 0.9 now"):
        tf_gpp.compress(base, train, val, checkpoint_dir=tmp_path, **quick)
    again = tf_gpp.compress(base, train, val, max_pruning_ratio=1.0, checkpoint_dir=tmp_path, **quick)
    assert [h.accuracy for h in again.history] == [h.accuracy for h in first.history]
    assert CompressConfig(target_macs=0.3).recipe()["max_pruning_ratio"] == 0.9
