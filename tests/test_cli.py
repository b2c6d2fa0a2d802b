import subprocess
import sys

import keras
import pytest

from tf_gpp.cli import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    m = keras.Model(inp, keras.layers.Dense(10, name="out")(x))
    path = tmp_path_factory.mktemp("m") / "m.keras"
    m.save(path)
    return path


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "tf_gpp", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("demo", "inspect", "compress", "grow", "convert", "bench", "report", "examples:"):
        assert cmd in out


def test_inspect(model_file, capsys):
    assert main(["inspect", str(model_file), "--all"]) == 0
    out = capsys.readouterr().out
    assert "prunable channel groups" in out and "c1" in out and "not prunable" in out


def test_convert_and_bench(model_file, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert main(["convert", str(model_file), "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert main(["bench", str(out), str(out), "--runs", "5"]) == 0
    assert "median" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "missing.keras"], "no such file"),
        (["convert", "{model}", "-o", "{model}"], "refusing to overwrite"),
        (["convert", "{model}", "--quantization", "int8"], "needs --data"),
        (["compress", "{model}", "--data", "nope", "--target-macs", "0.5"], "unknown dataset"),
        (["bench", "nothing.tflite"], "no such file"),
        (["report", "{dir}"], "no result.json"),
    ],
)
def test_user_errors_exit_2_with_one_line(model_file, tmp_path, capsys, argv, message):
    argv = [a.format(model=model_file, dir=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_corrupt_keras_file(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert main(["inspect", str(bad)]) == 2
    assert "not a valid .keras file" in capsys.readouterr().err


def test_lambda_model_refused_in_safe_mode(tmp_path, capsys):
    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(inp))
    path = tmp_path / "lam.keras"
    m.save(path)
    assert main(["inspect", str(path)]) == 2
    assert "--unsafe" in capsys.readouterr().err
    assert main(["inspect", str(path), "--unsafe"]) == 0


@pytest.mark.slow
def test_demo_quick(tmp_path):
    """The main job end to end (run in full by .ci/run)."""
    assert main(["demo", "--quick", "--data", "digits", "--out", str(tmp_path / "run")]) == 0
    for name in ("slim.keras", "slim.tflite", "slim_int8.tflite", "report.png", "report.html", "result.json"):
        assert (tmp_path / "run" / name).exists()
    assert main(["report", str(tmp_path / "run")]) == 0


def test_compress_and_grow_commands(tmp_path, capsys):
    from tests.digits_model import digits_cnn

    base = tmp_path / "digits.keras"
    digits_cnn(epochs=3).save(base)
    out = tmp_path / "slim.keras"
    argv = ["compress", str(base), "--data", "digits", "--target-macs", "0.6", "--rounds", "1",
            "--importance", "l1", "--no-push", "--finetune-epochs", "1", "-o", str(out)]
    assert main(argv) == 0
    assert out.exists() and "round" in capsys.readouterr().out
    grown = tmp_path / "grown.keras"
    assert main(["grow", "--data", "digits", "--max-rounds", "1", "--epochs-per-round", "1", "-o", str(grown)]) == 0
    assert grown.exists()


@pytest.fixture(scope="module")
def dynamic_model_file(tmp_path_factory):
    inp = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, name="c1")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(x))
    path = tmp_path_factory.mktemp("dyn") / "dyn.keras"
    m.save(path)
    return path


def test_inspect_dynamic_model_needs_input_shape(dynamic_model_file, capsys):
    assert main(["inspect", str(dynamic_model_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'pixels'" in err and "--input-shape" in err
    assert main(["inspect", str(dynamic_model_file), "--input-shape", "10,12,3"]) == 0
    out = capsys.readouterr().out
    assert f"{8 * 10 * 27 * 4 + 4 * 3:,} MACs" in out and "10x12x3" in out
    assert main(["inspect", str(dynamic_model_file), "--input-shape", "10,a"]) == 2
    assert "--input-shape" in capsys.readouterr().err


def test_inspect_warns_about_unpriced_layers(tmp_path, capsys):
    inp = keras.Input((4,))
    a, b = keras.layers.Dense(3, name="a")(inp), keras.layers.Dense(3, name="b")(inp)
    path = tmp_path / "dot.keras"
    keras.Model(inp, keras.layers.Dot(axes=1, name="dot")([a, b])).save(path)
    assert main(["inspect", str(path)]) == 0
    captured = capsys.readouterr()
    assert "dot (Dot)" in captured.err and "not priced" in captured.out
