import subprocess
import sys

import keras
import numpy as np
import pytest

import tf_gpp
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


# -- the CLI on the user's own data (.npz, image folders), verification, refusals --------------
def _digits_arrays():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype("float32")[..., None], d.target.astype("int64")


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    x, y = _digits_arrays()
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


def test_convert_int8_with_npz_verifies_on_1000_images(model_file, digits_npz, tmp_path, capsys):
    out = tmp_path / "m8.tflite"
    assert main(["convert", str(model_file), "-o", str(out), "--quantization", "int8", "--data", str(digits_npz)]) == 0
    text = capsys.readouterr().out
    assert "verification on 1,000 images" in text and "one image = 0.10 accuracy point" in text
    assert "(int8, n=1000): PASSED" in text
    from tf_gpp.convert import load_interpreter, quantization_kind

    assert quantization_kind(load_interpreter(out)) == "int8"


def test_convert_uses_all_images_when_fewer_than_1000(model_file, tmp_path, capsys):
    x, y = _digits_arrays()
    small = tmp_path / "small.npz"
    np.savez(small, x=x[:300], y=y[:300], x_val=x[300:400], y_val=y[300:400])
    assert main(["convert", str(model_file), "-o", str(tmp_path / "m.tflite"), "--data", str(small)]) == 0
    text = capsys.readouterr().out
    assert "verification on 400 images" in text and "all the data holds" in text and "n=400): PASSED" in text


def test_convert_failed_verification_exits_3(tmp_path, capsys):
    """Logits 1000 + tiny differences: int8 outputs (a range that must hold 0) cannot tell the
    classes apart, so the int8 model's predictions collapse."""
    x, _ = _digits_arrays()
    inp = keras.Input((8, 8, 1))
    dense = keras.layers.Dense(10, name="out")
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    rng = np.random.default_rng(0)
    dense.set_weights([rng.normal(0, 1e-3, (64, 10)).astype("float32"), np.full(10, 1000.0, "float32")])
    y = model.predict(x, verbose=0).argmax(1)  # the Keras model is right on every image
    assert len(np.unique(y)) > 3
    path, data = tmp_path / "peaky.keras", tmp_path / "peaky.npz"
    model.save(path)
    np.savez(data, x=x, y=y)
    argv = ["convert", str(path), "-o", str(tmp_path / "p.tflite"), "--quantization", "int8", "--data", str(data)]
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "verification FAILED" in captured.err


def test_image_folder_data(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, level in (("dark", 40), ("light", 210)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (10, 10)), 0, 255).astype("uint8")
            Image.fromarray(pixels, mode="L").save(tmp_path / "imgs" / c / f"{i}.png")
    inp = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, activation="relu", name="fc")(x)
    path = tmp_path / "two.keras"
    keras.Model(inp, keras.layers.Dense(2, name="out")(x)).save(path)
    out = tmp_path / "slim.keras"
    argv = ["compress", str(path), "--data", str(tmp_path / "imgs"), "--target-params", "0.7", "--rounds", "1",
            "--importance", "l1", "--no-push", "--finetune-epochs", "1", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "10x10 grayscale, pixels scaled to [0, 1]" in text
    import tf_gpp

    slim = keras.models.load_model(out)
    assert tf_gpp.profile(slim).params <= 0.7 * tf_gpp.profile(keras.models.load_model(path)).params


@pytest.mark.parametrize(
    "arrays, command, message",
    [
        ({"x": np.zeros((40, 9, 9, 1), "float32")}, "convert", "inputs of shape (None, 9, 9, 1)"),
        ({"x": np.zeros((40, 9, 9, 1), "float32")}, "compress", "inputs of shape (None, 9, 9, 1)"),
        ({"y": np.arange(40) % 12}, "compress", "labels must lie in [0, 10)"),
        ({"y": np.arange(40) % 12}, "convert", "labels must lie in [0, 10)"),
        ({"y": np.array([str(i % 10) for i in range(40)])}, "convert", "'y' has dtype <U1"),
        ({"x": np.full((40, 8, 8, 1), "a")}, "compress", "'x' has dtype <U1"),
    ],
)
def test_data_mistakes_exit_2_with_one_line(model_file, tmp_path, capsys, arrays, command, message):
    data = {"x": np.random.default_rng(0).random((40, 8, 8, 1), dtype=np.float32), "y": np.arange(40) % 10}
    data.update(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **data)
    out = tmp_path / ("o.keras" if command == "compress" else "o.tflite")
    argv = [command, str(model_file), "--data", str(path), "-o", str(out)]
    argv += ["--target-macs", "0.5"] if command == "compress" else []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and f"--data {path}" in err


def test_compress_without_target_refuses(model_file, digits_npz, capsys):
    assert main(["compress", str(model_file), "--data", str(digits_npz)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--target-macs" in err and "--strategy threshold" in err


def test_cli_choices_come_from_the_registries(capsys):
    from tf_gpp.cli import UserError, build_parser
    from tf_gpp.convert import quantization
    from tf_gpp.data import registry
    from tf_gpp.errors import TfGppError

    parser = build_parser()
    convert = parser._subparsers._group_actions[0].choices["convert"]  # noqa: SLF001 - argparse has no public accessor
    action = next(a for a in convert._actions if "--quantization" in a.option_strings)  # noqa: SLF001
    assert tuple(action.choices) == quantization.names()
    assert all(name in action.help for name in quantization.names())
    data_help = next(a for a in convert._actions if "--data" in a.option_strings).help  # noqa: SLF001
    assert all(name in data_help for name in registry.names()) and ".npz" in data_help
    assert issubclass(UserError, TfGppError)
    from tf_gpp.importance import names as importance_names

    compress = parser._subparsers._group_actions[0].choices["compress"]  # noqa: SLF001
    action = next(a for a in compress._actions if "--importance" in a.option_strings)  # noqa: SLF001
    assert list(action.choices) == importance_names() and "gpp_lda" in action.choices


def test_cli_defaults_are_the_library_defaults():
    """One source of truth: `tf-gpp grow` and `tf-gpp compress` take their defaults from the library."""
    import inspect

    from tf_gpp.cli import build_parser
    from tf_gpp.grow import grow

    args = build_parser().parse_args(["grow", "--data", "digits"])
    defaults = inspect.signature(grow).parameters
    assert args.max_rounds == defaults["max_rounds"].default
    assert args.epochs_per_round == defaults["epochs_per_round"].default
    args = build_parser().parse_args(["compress", "m.keras", "--data", "digits", "--target-macs", "0.3"])
    assert args.max_accuracy_drop is None  # a target is a target unless a tolerance is asked for
    from tf_gpp.prune.config import STRATEGIES

    strategy = next(a for a in build_parser()._subparsers._group_actions[0].choices["compress"]._actions
                    if a.dest == "strategy")
    assert sorted(strategy.choices) == sorted(STRATEGIES)


def test_unsupported_layer_two_lines_and_dump_only_with_verbose(tmp_path, capsys):
    inp = keras.Input((5, 3))
    h = keras.layers.GRU(4, name="gru")(inp)
    path = tmp_path / "gru.keras"
    keras.Model(inp, keras.layers.Dense(2, name="out")(h)).save(path)
    assert main(["convert", str(path), "-o", str(tmp_path / "g.tflite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "layer 'gru' (GRU)" in err[0] and "unroll=True" in err[1]
    assert main(["convert", str(path), "-o", str(tmp_path / "g.tflite"), "--verbose"]) == 2
    assert "TensorList" in capsys.readouterr().err  # the converter's log, in the traceback's cause


def test_inspect_says_why_nothing_is_prunable(tmp_path, capsys):
    inp = keras.Input((4,))
    path = tmp_path / "linear.keras"
    keras.Model(inp, keras.layers.Dense(3, name="out")(inp)).save(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 prunable channel groups" in out and "channels reach model output 'out'" in out
    assert "--all" in out


def test_convert_mixed_float16_model_with_a_one_line_notice(tmp_path, capsys):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = keras.Input((8, 8, 1))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="c1")(inp))
        model = keras.Model(inp, keras.layers.Dense(3, dtype="float32", name="out")(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "mixed.keras"
    model.save(path)
    assert main(["convert", str(path), "-o", str(tmp_path / "mixed.tflite")]) == 0
    notices = [line for line in capsys.readouterr().err.splitlines() if "mixed-precision" in line]
    assert len(notices) == 1 and notices[0].startswith("tf-gpp: UserWarning: model") and "'c1'" in notices[0]


CRITERION = '''
import numpy as np
from tf_gpp.importance import Importance, register_importance

CALLS = []


@register_importance("{name}")
class Stripes(Importance):
    def __call__(self, dep, group):
        CALLS.append(group.index)
        return (np.arange(group.size) % 3).astype(float) + 1
'''


@pytest.fixture
def criterion_module(tmp_path, monkeypatch):
    """A user's module on sys.path that registers the importance 'cli_stripes_test'."""
    import tf_gpp.importance

    name = f"user_criterion_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CRITERION.format(name="cli_stripes_test"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    tf_gpp.importance.unregister_importance("cli_stripes_test")
    sys.modules.pop(name, None)


def test_import_option_makes_a_registered_importance_usable(criterion_module, tmp_path, capsys):
    out = tmp_path / "slim.keras"
    argv = ["compress", "MODEL", "--data", "digits", "--limit", "300", "--target-macs", "0.6", "--rounds", "1",
            "--finetune-epochs", "1", "--importance", "cli_stripes_test", "-o", str(out)]
    with pytest.raises(SystemExit):  # the name is unknown until its module is imported
        main(argv)
    assert "invalid choice: 'cli_stripes_test'" in capsys.readouterr().err

    from tests.digits_model import digits_cnn

    base = tmp_path / "digits.keras"
    digits_cnn(epochs=1).save(base)
    argv[1] = str(base)
    assert main(["--import", criterion_module, *argv]) == 0, capsys.readouterr().err
    assert out.exists() and sys.modules[criterion_module].CALLS, "the user's criterion scored the groups"


def test_import_option_from_pythonpath_in_a_fresh_process(criterion_module, tmp_path):
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "tf_gpp", "compress", "--import", criterion_module, "--help"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cli_stripes_test" in proc.stdout and "--import MODULE" in proc.stdout


@pytest.mark.parametrize("module, message", [
    ("no_such_module_for_tf_gpp", "--import no_such_module_for_tf_gpp: no module named "
                                  "'no_such_module_for_tf_gpp'; run tf-gpp from the folder that holds it, "
                                  "add that folder to PYTHONPATH"),
    ("BROKEN", "--import BROKEN: the module failed while importing (ModuleNotFoundError: No module named "
               "'a_missing_dependency_of_it')"),
    ("missing/file.py", "--import missing/file.py: no such file"),
])
def test_import_option_bad_module_one_line(model_file, tmp_path, monkeypatch, capsys, module, message):
    name = f"broken_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("import a_missing_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module, message = module.replace("BROKEN", name), message.replace("BROKEN", name)
    assert main(["inspect", str(model_file), "--import", module]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tf-gpp: error: ") and message in err


def test_import_option_takes_a_file_path(model_file, tmp_path, capsys):
    import tf_gpp.importance

    path = tmp_path / "file_criterion_for_cli_test.py"
    path.write_text(CRITERION.format(name="cli_file_stripes_test"))
    try:
        assert main([f"--import={path}", "inspect", str(model_file)]) == 0
        assert "cli_file_stripes_test" in tf_gpp.importance.names()
    finally:
        tf_gpp.importance.unregister_importance("cli_file_stripes_test")
        sys.modules.pop(path.stem, None)


def test_compress_push_every_round_flag_reaches_compress(capsys):
    """--push-every-round is compress's push_every_round: without --push it is refused with the
    library's own message, before any model or data is read."""
    code = main(["compress", "missing.keras", "--data", "digits", "--target-macs", "0.3", "--push-every-round"])
    assert code == 2
    assert "push_every_round=True pushes only with push=True" in capsys.readouterr().err


def test_compress_optimizer_rate_and_max_ratio_reach_compress(model_file, monkeypatch, capsys):
    """--optimizer/--learning-rate/--max-pruning-ratio are compress's options; a bad name is refused
    with the library's message before the model or data is read."""
    code = main(["compress", "missing.keras", "--data", "digits", "--target-macs", "0.3", "--optimizer", "nonsense"])
    assert code == 2 and "optimizer='nonsense' is not a Keras optimizer" in capsys.readouterr().err

    seen = {}

    class Stop(Exception):
        pass

    def fake_compress(model, train, val, config):
        seen.update(optimizer=config.optimizer, learning_rate=config.learning_rate, ratio=config.max_pruning_ratio)
        raise Stop

    monkeypatch.setattr(tf_gpp, "compress", fake_compress)
    with pytest.raises(Stop):
        main(["compress", str(model_file), "--data", "digits", "--target-macs", "0.3", "--optimizer", "sgd",
              "--learning-rate", "0.02", "--max-pruning-ratio", "0.9", "--limit", "200"])
    assert seen == {"optimizer": "sgd", "learning_rate": 0.02, "ratio": 0.9}
    code = main(["compress", "missing.keras", "--data", "digits", "--target-macs", "0.3", "--max-pruning-ratio", "2"])
    assert code == 2 and "max_pruning_ratio=2.0: the largest share" in capsys.readouterr().err
