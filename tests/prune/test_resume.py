"""Kill a compress run in the middle and resume it from its checkpoints."""

import subprocess
import sys
import textwrap

import tf_gpp
from tests.digits_model import digits_split

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import tf_gpp
    from tests.digits_model import digits_cnn, digits_split
    from tests.kill_switch import kill_switch
    exec(kill_switch({kill_at}))  # defines Kill

    base = digits_cnn(epochs=4)
    base.save({base!r})
    train, val = digits_split()
    tf_gpp.compress(base, train, val, target_macs=0.4, rounds=2, finetune_epochs=1,
                    checkpoint_dir={ckpt!r}, verbose=0, callbacks=[Kill()])
    """
)


def test_killed_run_resumes_after_last_finished_round(tmp_path):
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    ckpt, base_path = tmp_path / "ckpt", tmp_path / "base.keras"
    # fits (the default recipe does not push): finetune r1 (1), finetune r2 (2) -> killed while round 2 trains
    code = SCRIPT.format(root=root, kill_at=2, base=str(base_path), ckpt=str(ckpt))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert (ckpt / "round_1.keras").exists() and not (ckpt / "round_2.keras").exists()
    assert not list(ckpt.glob(".*")), "no half-written files are left behind"

    import keras

    base = keras.models.load_model(base_path)
    train, val = digits_split()
    res = tf_gpp.compress(base, train, val, target_macs=0.4, rounds=2, finetune_epochs=1,
                          checkpoint_dir=ckpt, verbose=0)
    assert [h.round for h in res.history] == [1, 2]
    assert res.history[-1].macs_ratio <= 0.4
    assert (ckpt / "round_2.keras").exists()
