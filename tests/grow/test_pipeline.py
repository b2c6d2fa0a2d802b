"""grow -> push -> prune in one call: end to end on tiny digits, resume, input forms, errors."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tf_gpp.errors import DataError, PruningRequestError
from tf_gpp.gpp import GPPResult, as_pipelines, grow_push_prune
from tf_gpp.grow import GrowError, model_cost
from tf_gpp.prune import CompressConfig

EAGER = {"run_eagerly": True}
GROW = dict(start=1, start_width=4, max_rounds=1, min_delta=-1.0, actions=("add",),
            epochs_per_round=1, compile_kwargs=EAGER, seed=0)
COMPRESS = dict(target_macs=0.5, rounds=1, push_epochs=1, finetune_epochs=1, max_accuracy_drop=1.0)


@pytest.fixture(scope="module")
def eager_functions():
    """compress compiles without run_eagerly; on a few tiny batches tracing costs more than it saves."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def arrays(tiny_digits):
    return tiny_digits.as_numpy("train"), tiny_digits.as_numpy("val")


@pytest.fixture(scope="module")
def gpp(arrays, eager_functions, tmp_path_factory):
    (x, y), val = arrays
    ckpt = tmp_path_factory.mktemp("gpp")
    result = grow_push_prune((x, y), val, grow_kwargs=GROW, compress_kwargs=COMPRESS,
                             checkpoint_dir=ckpt, verbose=1)
    return result, ckpt


def test_end_to_end_smaller_model_right_shape(gpp, arrays):
    result, ckpt = gpp
    assert isinstance(result, GPPResult)
    grown, final = model_cost(result.grown.model), model_cost(result.model)
    assert [h["action"] for h in result.grown.history] == ["start", "add"]
    assert (grown.params, grown.macs) == (result.grown.cost.params, result.grown.cost.macs)
    assert final.macs < grown.macs and final.params < grown.params
    assert final.macs <= 0.5 * grown.macs
    (x, _), _ = arrays
    out = result.model.predict(x[:5], verbose=0)
    assert out.shape == (5, 10) and np.all(np.isfinite(out))
    d = result.to_dict()
    json.dumps(d)  # JSON-ready
    assert d["final"]["macs"] == final.macs and d["grown"]["name"] == result.grown.spec.model_name
    assert d["final"]["macs_ratio"] < 1 and set(result.seconds) == {"grow", "compress"}
    text = result.summary()
    assert "[compress]" in text and "[gpp] Inception-" in text
    assert (ckpt / "grown.keras").exists() and (ckpt / "compress" / "state.json").exists()


def test_grown_model_left_untouched(gpp, arrays):
    """Compression works on a copy: the grown net still gives its recorded accuracy."""
    result, _ = gpp
    _, (xv, yv) = arrays
    logits = result.grown.model.predict(xv, verbose=0)
    acc = float(np.mean(np.argmax(logits, axis=1) == yv))
    assert acc == pytest.approx(result.grown.val_accuracy, abs=1e-6)


def test_resume_skips_growing(gpp, arrays, capsys):
    result, ckpt = gpp
    (x, y), val = arrays
    again = grow_push_prune((x, y), val, grow_kwargs=GROW, compress_kwargs=COMPRESS,
                            checkpoint_dir=ckpt, verbose=1)
    assert "resuming: grown" in capsys.readouterr().out
    assert again.grown.history == result.grown.history
    assert model_cost(again.model) == model_cost(result.model)


def test_input_forms(tiny_digits):
    (x, y), (xv, yv) = tiny_digits.as_numpy("train"), tiny_digits.as_numpy("val")
    from_bundle = as_pipelines(tiny_digits, None)
    assert from_bundle == (tiny_digits.train, tiny_digits.val, tiny_digits.input_shape, 10)
    onehot = np.eye(10, dtype="float32")[y]
    train, val, shape, classes = as_pipelines((x[..., 0], onehot), (xv, yv), batch_size=16)
    assert shape is None and classes == 10
    xb, yb = next(iter(train))
    assert xb.shape[1:] == (8, 8, 1) and yb.shape.rank == 1 and xb.shape[0] == 16
    assert sum(int(b[1].shape[0]) for b in val) == len(yv)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert as_pipelines(ds, ds, None, 10)[:2] == (ds, ds)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(grow_kwargs={"max_round": 2}), GrowError, "unknown option 'max_round'"),
        (dict(grow_kwargs={"num_classes": 3}), GrowError, "pass it to grow_push_prune"),
        # compress options are checked by CompressConfig.validate, as compress itself does
        (dict(compress_kwargs={"targt_macs": 0.5}), PruningRequestError,
         "unknown compress option 'targt_macs'; did you mean 'target_macs'"),
        (dict(compress_kwargs={"model": None}), PruningRequestError, "may not set 'model'"),
        (dict(compress_kwargs={"target_macs": -1}), PruningRequestError, r"target_macs=-1: .*\(0, 1\]"),
        (dict(compress_kwargs={"target_macs": 1}), PruningRequestError, "already meets it"),
        (dict(compress_kwargs={"rounds": 0}), PruningRequestError, "rounds=0"),
        (dict(compress_kwargs={"importance": "nope"}), PruningRequestError, "unknown importance"),
        (dict(compress_kwargs=CompressConfig(strategy="magic")), PruningRequestError, "strategy='magic'"),
        (dict(compress_kwargs={"checkpoint_dir": "a"}, checkpoint_dir="b"), PruningRequestError, "not both"),
        (dict(grow_kwargs={"max_params": 10}), GrowError, "max_params=10 is smaller"),
    ],
)
def test_bad_options_fail_before_training(tiny_digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        grow_push_prune(tiny_digits, verbose=0, **kwargs)


def test_bad_data():
    x = np.random.rand(20, 8, 8, 1).astype("float32")
    with pytest.raises(DataError, match="train_data: .*continuous"):
        grow_push_prune((x, np.linspace(0, 1, 20)), (x, np.arange(20) % 2), verbose=0)
    with pytest.raises(GrowError, match="val_data is required"):
        grow_push_prune((x, np.arange(20) % 2), verbose=0)
    with pytest.raises(DataError, match="batched images"):
        flat = np.random.rand(20, 64).astype("float32")
        grow_push_prune((flat, np.arange(20) % 2), (flat, np.arange(20) % 2), verbose=0)
