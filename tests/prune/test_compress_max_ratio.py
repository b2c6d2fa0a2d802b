"""compress(max_pruning_ratio=...): over all rounds, every layer keeps its share of the user's
model (widths read from the original, saved and reloaded); a checkpoint records the option only
when it is set, and a resumed run keeps the share of the original, not of the last round."""

import json

import keras
import numpy as np

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
    free = tf_gpp.compress(base, train, val, **QUICK)
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


def test_the_recipe_records_the_ratio_only_when_set():
    assert "max_pruning_ratio" not in CompressConfig(target_macs=0.3).recipe()  # older checkpoints resume
    assert CompressConfig(target_macs=0.3, max_pruning_ratio=0.9).recipe()["max_pruning_ratio"] == 0.9
