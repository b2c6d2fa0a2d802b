"""Kill a growth run between rounds and resume it from its checkpoint: same growth."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tf_gpp
from tf_gpp.data import load_digits

ROOT = str(Path(__file__).resolve().parents[2])
OPTIONS = dict(max_rounds=2, min_delta=-1.0, epochs_per_round=1, start_width=4, seed=0, verbose=0)
DATA = dict(limit=60, validation_split=1 / 3, test_split=0.0, batch_size=40, seed=0)

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import tf_gpp
    from tf_gpp.data import load_digits
    from tests.kill_switch import kill_switch
    exec(kill_switch({kill_at}))  # defines Kill

    tf_gpp.grow_network(load_digits(**{data!r}), checkpoint_dir={ckpt!r}, callbacks=[Kill()], **{options!r})
    """
)


def _steps(result: tf_gpp.GrowResult) -> list[tuple]:
    return [(h["round"], h["action"], h["name"], h["params"], h["accepted"]) for h in result.history]


def test_killed_growth_resumes_with_the_same_result(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    # fits: start (1), round-1 candidate (2), round-2 candidate (3) -> killed inside round 2
    code = SCRIPT.format(root=ROOT, kill_at=3, data=DATA, ckpt=str(ckpt), options=OPTIONS)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 17, proc.stderr[-2000:]
    state = json.loads((ckpt / "grown.json").read_text())
    assert state["progress"] == {**state["progress"], "round": 1, "done": False}
    assert not list(ckpt.glob(".*")), "no half-written files are left behind"

    resumed = tf_gpp.grow_network(load_digits(**DATA), checkpoint_dir=ckpt, **OPTIONS)
    straight = tf_gpp.grow_network(load_digits(**DATA), checkpoint_dir=tmp_path / "straight", **OPTIONS)
    assert _steps(resumed) == _steps(straight)
    assert [h["round"] for h in resumed.history] == [0, 1, 2]
    for a, b in zip(resumed.history, straight.history, strict=True):
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-6)
    assert json.loads((ckpt / "grown.json").read_text())["progress"]["done"] is True

    # a finished growth is returned as is, without training
    again = tf_gpp.grow_network(load_digits(**DATA), checkpoint_dir=ckpt, **OPTIONS)
    assert _steps(again) == _steps(resumed)
    assert again.model.count_params() == resumed.model.count_params()

    # the same folder with other options is refused, naming them; the folder is left as it was
    before = {f.name: f.read_bytes() for f in ckpt.iterdir()}
    with pytest.raises(tf_gpp.grow.GrowError, match=r"max_rounds=2 there, 3 now.*new checkpoint_dir"):
        tf_gpp.grow_network(load_digits(**DATA), checkpoint_dir=ckpt, **{**OPTIONS, "max_rounds": 3})
    assert {f.name: f.read_bytes() for f in ckpt.iterdir()} == before
