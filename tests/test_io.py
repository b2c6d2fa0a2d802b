"""Atomic writes and round checkpoints (tf_gpp.io)."""

import json
import os

import keras
import numpy as np
import pytest

from tf_gpp.io import RoundCheckpoint, save_model_atomic, write_atomic, write_json_atomic


def test_write_atomic_text_bytes_and_permissions(tmp_path):
    out = write_atomic(tmp_path / "sub" / "a.txt", "héllo")
    assert out.read_bytes() == "héllo".encode()
    write_atomic(out, b"\x00\x01")
    assert out.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # like open(), not mkstemp's 0600
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.txt"]  # no temporary left
    assert json.loads(write_json_atomic(tmp_path / "s.json", {"a": [1, 2]}).read_text()) == {"a": [1, 2]}


def test_a_failed_write_keeps_the_old_file(tmp_path):
    out = write_atomic(tmp_path / "m.keras", b"old")

    class Broken:
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_model_atomic(Broken(), out)
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def _tiny(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((3,))
    return keras.Model(inp, keras.layers.Dense(2)(inp))


def test_round_checkpoint_saves_models_then_state_and_drops_stale_ones(tmp_path):
    ckpt = RoundCheckpoint(tmp_path / "run", state_name="grown.json", stale="grown_round*.keras")
    assert ckpt.load() is None
    m1, m2 = _tiny(1), _tiny(2)
    ckpt.save({"model": "grown_round1.keras", "round": 1}, {"grown_round1.keras": m1})
    ckpt.save({"model": "grown_round2.keras", "round": 2}, {"grown_round2.keras": m2})
    assert ckpt.load() == {"model": "grown_round2.keras", "round": 2}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["grown.json", "grown_round2.keras"]
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(ckpt.load_model("grown_round2.keras")(x), m2(x), rtol=1e-6)
    # a path with a folder part is used as it is
    np.testing.assert_allclose(ckpt.load_model(str(ckpt.path("grown_round2.keras")))(x), m2(x), rtol=1e-6)
    keep_all = RoundCheckpoint(tmp_path / "c")
    keep_all.save({"n": 1}, {"round_1.keras": m1})
    keep_all.save({"n": 2}, {"round_2.keras": m2})
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["round_1.keras", "round_2.keras", "state.json"]
