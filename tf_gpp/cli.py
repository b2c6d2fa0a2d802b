"""``tf-gpp``: the command line (also ``python -m tf_gpp``).

With no arguments it runs the main job on an embedded default (``tf-gpp demo``).
User errors (every :class:`~tf_gpp.errors.TfGppError`) exit with code 2 and a one-line
message (two for a failed TFLite conversion: the layer and the fix); ``--verbose`` shows
details. ``convert`` exits with 3 when the converted model fails verification.

``--import MODULE`` (repeatable, anywhere on the line) imports the user's module before the
parser is built, so the names its ``register_importance(...)`` (or dataset loader,
quantization mode) calls add are accepted by ``--importance`` (``--data``,
``--quantization``). We chose an explicit option over package entry points: it works for a
plain ``.py`` file without packaging, the command line says which code runs, and no installed
package can change the CLI's names behind the user's back.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from tf_gpp.errors import TfGppError

EXAMPLES = """examples:
  tf-gpp                                   # the main job: train, push, prune, convert, bench (a few minutes)
  tf-gpp inspect model.keras               # channel groups, params and MACs per layer
  tf-gpp compress model.keras --data fashion_mnist --target-macs 0.3 -o slim.keras
  tf-gpp compress model.keras --data photos/ --target-macs 0.5      # photos/<class>/<images>
  tf-gpp grow --data digits --max-rounds 3 -o grown.keras
  tf-gpp convert slim.keras -o slim.tflite --quantization int8 --data mine.npz   # x, y[, x_val, y_val]
  tf-gpp bench base.tflite slim.tflite --threads 1
  tf-gpp report gpp_runs/demo-20261122-101500
  tf-gpp --import my_criteria compress m.keras --data digits --target-macs 0.3 --importance mine
                                           # my_criteria.py calls tf_gpp.importance.register_importance("mine", ...)
"""


IMPORT_HELP = ("import this Python module before the command runs (repeatable), so that the names "
               "its tf_gpp.importance.register_importance(...) calls (or dataset loaders, quantization "
               "modes) add are accepted: a module name found from the current folder or PYTHONPATH, "
               "or a path to a .py file")

EXIT_USER_ERROR = 2
EXIT_VERIFICATION_FAILED = 3
VERIFY_SAMPLES = 1000
"""Default verification sample: one image is 0.1 accuracy point (all images when fewer)."""


class UserError(TfGppError, ValueError):
    """A mistake in the command line or the files it names: exit code 2."""


def _load_model(path: str, unsafe: bool) -> Any:
    import keras

    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file")
    if p.suffix != ".keras":
        raise UserError(f"{path}: expected a Keras 3 '.keras' file (save with model.save('x.keras'))")
    import zipfile

    if not zipfile.is_zipfile(p):
        raise UserError(f"{path}: not a valid .keras file (not a zip archive: truncated or corrupt?)")
    try:
        return keras.models.load_model(p, safe_mode=not unsafe, compile=False)
    except (TypeError, ValueError) as e:
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", str(e))
        if missing:
            raise UserError(
                f"{path}: uses the custom class '{missing[1]}', which is not registered here; load the "
                "model in Python after importing the module that defines it (decorated with "
                "@keras.saving.register_keras_serializable) and call tf_gpp from there"
            ) from e
        if isinstance(e, TypeError):
            raise UserError(f"{path}: cannot be loaded as a Keras model ({str(e).splitlines()[0]})") from e
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise UserError(
                f"{path}: contains a Lambda layer with Python code, refused in safe mode; "
                "pass --unsafe only if you trust this file"
            ) from e
        raise UserError(f"{path}: cannot be loaded as a Keras model ({str(e).splitlines()[0]})") from e
    except Exception as e:  # noqa: BLE001 - zip errors, truncated files...
        raise UserError(f"{path}: not a valid .keras file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def _modules_to_import(argv: list[str]) -> list[str]:
    """The values of every ``--import MODULE`` / ``--import=MODULE`` in ``argv`` (before ``--``)."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--import" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith("--import="):
            out.append(arg.split("=", 1)[1])
    return out


def import_user_module(spec: str) -> None:
    """Import ``spec`` (a module name, or a path to a ``.py`` file) for its registrations.

    Raises:
        UserError: it cannot be found or fails while importing (one line naming it and the fix).
    """
    is_file = spec.endswith(".py")
    try:
        if is_file:
            path = Path(spec)
            if not path.is_file():
                raise UserError(f"--import {spec}: no such file; give the path of a .py file or a module name")
            loaded = sys.modules.get(path.stem)
            if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
                return  # imported already: its registrations are made
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:  # the console script omits it
                sys.path.append(os.getcwd())
            importlib.import_module(spec)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises
        missing = isinstance(e, ModuleNotFoundError) and e.name is not None and \
            (spec == e.name or spec.startswith(e.name + "."))
        if missing and not is_file:
            raise UserError(
                f"--import {spec}: no module named {e.name!r}; run tf-gpp from the folder that holds it, add "
                f"that folder to PYTHONPATH, or give the file's path (--import path/to/{spec.split('.')[-1]}.py)"
            ) from e
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"--import {spec}: the module failed while importing ({type(e).__name__}: {first}); "
                        f"fix it (python -c 'import {Path(spec).stem}' shows the traceback)") from e


def _load_data(spec: str, limit: int | None, batch_size: int = 128, model: Any = None) -> Any:
    """The dataset ``spec`` names (:mod:`tf_gpp.data.registry`); ``model`` gives image sizes."""
    from tf_gpp.data import registry
    from tf_gpp.errors import DataError

    try:
        return registry.load(spec, limit=limit, batch_size=batch_size, model=model)
    except DataError as e:
        raise DataError(f"--data {spec}: {e}") from e


def _check_data(model: Any, spec: str, x: Any, y: Any = None, validation: Any = None) -> None:
    """Refuse data the model cannot take (input shape, dtype, labels beyond its classes) up
    front, with the --data flag named: the intake's DataError, exit code 2."""
    from tf_gpp.data import as_training_data
    from tf_gpp.errors import DataError

    try:
        as_training_data(model, x, y, validation_data=validation, shuffle=False, batch_size=256)
    except DataError as e:
        msg = str(e).replace("train_data", "the data").replace("validation_data", "the validation data")
        raise DataError(f"--data {spec}: {msg}") from e


def _take(ds: Any, n: int, splits: tuple[str, ...]) -> tuple[Any, Any, list[str]]:
    """Up to ``n`` ``(x, y)`` samples from the first splits of ``ds`` that exist, in order."""
    import numpy as np

    xs, ys, used, total = [], [], [], 0
    for which in splits:
        pipe = getattr(ds, which, None)
        if pipe is None or total >= n:
            continue
        used.append(which)
        for x, y in pipe:
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
            total += len(xs[-1])
            if total >= n:
                break
    if not xs:
        raise UserError("--data: the dataset holds no samples")
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n], used


def _out_path(path: str | None, default: Path, inputs: list[str]) -> Path:
    out = Path(path) if path else default
    for i in inputs:
        if Path(i).exists() and out.resolve() == Path(i).resolve():
            raise UserError(f"-o {out}: refusing to overwrite the input file; choose another output path")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _save_model(model: Any, out: Path) -> None:
    from tf_gpp.io import save_model_atomic

    save_model_atomic(model, out)


def _parse_input_shape(text: str | None) -> Any:
    """``224,224,3`` -> (224, 224, 3); ``name:224,224,3;other:10`` or ``224,224,3;10`` for several inputs."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(";") if p.strip()]
    named: dict[str, tuple] = {}
    shapes: list[tuple] = []
    for part in parts:
        name, _, dims = part.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise UserError(f"--input-shape {text}: expected positive sizes without the batch, like 224,224,3")
        if name:
            named[name] = shape
        else:
            shapes.append(shape)
    if named and shapes:
        raise UserError(f"--input-shape {text}: name every input (name:224,224,3;other:10) or none")
    if named:
        return named
    return shapes[0] if len(shapes) == 1 else shapes


# -- subcommands --------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    import tf_gpp

    model = _load_model(args.model, args.unsafe)
    shape = _parse_input_shape(args.input_shape)
    dep = tf_gpp.DependencyGraph(model, input_shape=shape)
    prof = tf_gpp.profile(model, input_shape=shape)
    print(f"model '{model.name}': {prof.params:,} params, {prof.macs:,} MACs per sample "
          f"{prof.describe_inputs()}\n")
    print(prof.table(all_layers=args.all))
    if prof.unpriced:
        print(f"tf-gpp inspect: {prof.unpriced_warning()}", file=sys.stderr)
    print(f"\n{len(dep.groups)} prunable channel groups:")
    for g in dep.groups:
        made = ", ".join(f"{key} of {layer}" for layer, key in g.internal.items())  # units inside a layer
        print(f"  #{g.index:<3} size {g.size:<5} " + (made if made else f"producers {', '.join(g.producers)}")
              + (f"  | consumers {', '.join(g.consumers)}" if args.all else ""))
    frozen = dep.frozen_reasons()
    if not dep.groups:
        reasons = _frozen_summary(frozen)
        print("  none, because " + (reasons or "the model has no layer with prunable output channels")
              + ("" if args.all else " (--all lists every layer and its reason)"))
    if frozen and args.all:
        print("\nnot prunable:")
        for layer, why in frozen.items():
            print(f"  {layer}: {why}")
    return 0


def _frozen_summary(frozen: dict[str, str], limit: int = 4) -> str:
    """The distinct reasons layers are not prunable, most frequent first, with their layers
    (model inputs, never prunable, left out)."""
    by_reason: dict[str, list[str]] = {}
    for layer, why in frozen.items():
        if why and not why.endswith("is a model input"):
            by_reason.setdefault(why, []).append(layer)
    parts = []
    for why, layers in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:limit]:
        shown = ", ".join(layers[:3]) + (f" +{len(layers) - 3}" if len(layers) > 3 else "")
        parts.append(f"{why} (layers {shown})")
    return "; ".join(parts)


def cmd_compress(args: argparse.Namespace) -> int:
    import tf_gpp

    has_target = args.target_macs is not None or args.target_params is not None
    strategy = args.strategy or "global"
    if strategy != "threshold" and not has_target:
        raise UserError("compress needs --target-macs or --target-params (a fraction of the base model such "
                        "as 0.3); or pass --strategy threshold for the paper's eta*std rule without a size target")
    given = {name: getattr(args, name) for name in ("importance", "push", "push_every_round", "rounds", "push_epochs",
                                                    "finetune_epochs", "min_finetune_steps", "optimizer", "learning_rate",
                                                    "distill", "max_pruning_ratio")
             if getattr(args, name) is not None}  # the others: compress's defaults, defined once
    config = tf_gpp.prune.CompressConfig(  # every option checked before the model and data load
        target_macs=args.target_macs, target_params=args.target_params,
        max_accuracy_drop=args.max_accuracy_drop, round_to=args.round_to, checkpoint_dir=args.checkpoint_dir,
        strategy=strategy, verbose=2 if args.verbose else 1, **given,
    ).validate()
    model = _load_model(args.model, args.unsafe)
    out = _out_path(args.output, Path(args.model).with_name(Path(args.model).stem + "_gpp.keras"), [args.model])
    ds = _load_data(args.data, args.limit, model=model)
    print(ds.describe())
    _check_data(model, args.data, ds.train, validation=ds.val if ds.val is not None else ds.test)
    if strategy == "threshold":
        print("strategy: threshold (eta*std per layer, every round, or until --max-accuracy-drop)")
    res = tf_gpp.compress(model, ds.train, ds.val if ds.val is not None else ds.test, config=config)
    _save_model(res.model, out)
    print(res.summary())
    print(f"saved {out}")
    return 0


def cmd_grow(args: argparse.Namespace) -> int:
    from tf_gpp.grow import grow
    from tf_gpp.prune import CompressConfig

    config = CompressConfig(target_macs=args.then_compress, verbose=1).validate() if args.then_compress else None
    ds = _load_data(args.data, args.limit)
    print(ds.describe())
    out = _out_path(args.output, Path("grown.keras"), [])
    res = grow(ds.train, ds.val, ds.input_shape, ds.num_classes, max_rounds=args.max_rounds,
               max_params=args.max_params, epochs_per_round=args.epochs_per_round, verbose=1)
    model = res.model
    if args.then_compress:
        import tf_gpp

        model = tf_gpp.compress(model, ds.train, ds.val, config=config).model
    _save_model(model, out)
    print(res.summary())
    print(f"saved {out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from tf_gpp.convert import quantization, to_tflite, verify

    mode = quantization.get(args.quantization)
    if args.verify_samples < 1:
        raise UserError(f"--verify-samples {args.verify_samples}: must be >= 1")
    if mode.needs_calibration and not args.data:
        raise UserError(f"--quantization {mode.name} needs --data (representative samples for calibration)")
    model = _load_model(args.model, args.unsafe)
    out = _out_path(args.output, Path(args.model).with_suffix(".tflite"), [args.model])
    rep = x = y = None
    if args.data:
        ds = _load_data(args.data, args.limit, model=model)
        print(ds.describe())
        x, y, used = _take(ds, args.verify_samples, ("test", "val", "train"))
        _check_data(model, args.data, x, y)
        if mode.needs_calibration:
            rep, _, _ = _take(ds, 200, ("train", "val", "test"))
        print(f"verification on {len(x):,} images from the {'+'.join(used)} split"
              f"{'s' if len(used) > 1 else ''} (one image = {100 / len(x):.2f} accuracy point"
              + ("; all the data holds" if len(x) < args.verify_samples else "") + ")")
    path = to_tflite(model, out, quantization=mode.name, representative_data=rep, select_tf_ops=args.select_tf_ops)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if x is not None:
        report = verify(path, model, x, y, warn=False)
        print(report)
        if not report.passed:
            print(f"tf-gpp convert: verification FAILED: {report.message}", file=sys.stderr)
            return EXIT_VERIFICATION_FAILED
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from tf_gpp.convert import benchmark, benchmark_ab

    for p in args.tflite:
        if not Path(p).exists():
            raise UserError(f"{p}: no such file")
    if len(args.tflite) == 1:
        print(benchmark(args.tflite[0], threads=args.threads, runs=args.runs))
    elif len(args.tflite) == 2:
        print(benchmark_ab(args.tflite[0], args.tflite[1], threads=args.threads, rounds=args.runs))
    else:
        raise UserError("bench takes one .tflite file, or two to compare them interleaved")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tf_gpp.report import html_report, plot_report

    run = Path(args.run_dir)
    result = run / "result.json"
    if not result.exists():
        raise UserError(f"{run}: no result.json (run 'tf-gpp' or 'tf-gpp demo' first, or point to its output folder)")
    payload = json.loads(result.read_text())
    png = plot_report(run / "report.png", payload["compress"], latency=payload.get("latency"))
    page = html_report(run / "report.html", png, payload["compress"], payload.get("facts"))
    print(f"wrote {png} and {page}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tf_gpp.demo import run_demo

    run_demo(out_dir=args.out, data=args.data, quick=args.quick, epochs=args.epochs)
    return 0


# -- parser ------------------------------------------------------------------
def _add_subcommand(sub: Any, name: str, help_: str, example: str) -> argparse.ArgumentParser:
    """A subcommand's parser with the options every command takes (``--verbose``, ``--import``:
    also accepted after the subcommand's name)."""
    sp = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS)
    sp.add_argument("--import", dest="imports", action="append", metavar="MODULE", default=argparse.SUPPRESS,
                    help=IMPORT_HELP)
    return sp


def _add_compress_training(sp: argparse.ArgumentParser) -> None:
    """compress's scoring, push and fine-tuning options, their defaults read from CompressConfig."""
    from tf_gpp.importance import names as importance_names
    from tf_gpp.prune.config import CompressConfig

    defaults = CompressConfig()
    sp.add_argument("--importance", choices=importance_names(),
                    help=f"how units are scored (default {defaults.importance}); names from tf_gpp.importance's "
                    "registry; gpp is the CVIU paper's pipeline; --import MODULE adds the names that "
                    "MODULE registers")
    sp.add_argument("--push", action=argparse.BooleanOptionalAction,
                    help=f"a push phase before round 1, as GPP (default {'on' if defaults.push else 'off'}; "
                    "--push with --importance gpp is the papers' path)")
    sp.add_argument("--push-every-round", action=argparse.BooleanOptionalAction,
                    help="with --push: push before every round, not only before round 1 "
                    f"(default {'on' if defaults.push_every_round else 'off'})")
    sp.add_argument("--rounds", type=int, help=f"prune rounds (default {defaults.rounds})")
    sp.add_argument("--push-epochs", type=int,
                    help=f"epochs of each push phase, with --push (default {defaults.push_epochs})")
    sp.add_argument("--finetune-epochs", type=int, help=f"fine-tuning epochs per round (default {defaults.finetune_epochs})")
    sp.add_argument("--min-finetune-steps", type=int,
                    help=f"a floor in optimizer steps per fine-tune (default {defaults.min_finetune_steps})")
    sp.add_argument("--optimizer", help=f"the optimizer of every fit: a Keras optimizer name such as sgd or rmsprop "
                    f"(default {defaults.optimizer}; the recipe was measured with it)")
    sp.add_argument("--learning-rate", type=float,
                    help=f"the rate every fit starts at (default {defaults.learning_rate}; cosine-decayed within it)")
    sp.add_argument("--max-pruning-ratio", type=float,
                    help="the largest share of any layer's width that may go (default "
                    f"{defaults.max_pruning_ratio}: every layer keeps at least "
                    f"{100 * (1 - defaults.max_pruning_ratio):.0f}%%; 1: no limit)")
    sp.add_argument("--distill", action=argparse.BooleanOptionalAction,
                    help=f"fine-tune with distillation from the original (default {'on' if defaults.distill else 'off'})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tf-gpp",
        description="Grow-Push-Prune for Keras 3: compress classifiers into slim, fast TFLite models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--verbose", "-v", action="store_true", help="show details and tracebacks")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE", default=[], help=IMPORT_HELP)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add = functools.partial(_add_subcommand, sub)

    from tf_gpp.convert import quantization
    from tf_gpp.data import registry

    d = add("demo", "the main job on an embedded default (also what plain 'tf-gpp' runs)", "tf-gpp demo --quick")
    d.add_argument("--data", default="default", help="default (Fashion-MNIST from the Debian package, the Keras cache or a download; else "
                   f"digits, with a notice) or any --data of compress: {registry.help_text()}")
    d.add_argument("--out", default=None, help="output folder (default: a new gpp_runs/demo-<time>)")
    d.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (about a minute)")
    d.add_argument("--epochs", type=int, default=None, help="base-model training epochs")
    d.set_defaults(func=cmd_demo)

    sp = add("inspect", "channel groups, params and MACs per layer of a .keras model", "tf-gpp inspect model.keras --all")
    sp.add_argument("model")
    sp.add_argument("--all", action="store_true", help="all layers, consumers and unprunable reasons")
    sp.add_argument("--input-shape", help="input size without the batch, e.g. 224,224,3 (required when the "
                    "model's input size is dynamic; several inputs: a:224,224,3;b:10)")
    sp.add_argument("--unsafe", action="store_true", help="allow Lambda layers (runs code from the file)")
    sp.set_defaults(func=cmd_inspect)

    data_help = f"the data: {registry.help_text()}"
    sp = add("compress", "push and prune a .keras classifier to a target", "tf-gpp compress m.keras --data fashion_mnist --target-macs 0.3 -o slim.keras")
    sp.add_argument("model")
    sp.add_argument("--data", required=True, help=data_help)
    sp.add_argument("-o", "--output", help="output .keras (default: <model>_gpp.keras)")
    sp.add_argument("--target-macs", type=float, help="fraction of base MACs (e.g. 0.3) or absolute")
    sp.add_argument("--target-params", type=float, help="fraction of base params or absolute")
    sp.add_argument("--strategy", choices=["global", "per_layer", "threshold"], default=None,
                    help="global (default: rank all channels to the target), per_layer (the paper's eta*std "
                    "per layer, eta chosen to reach the target) or threshold (eta*std, no size target)")
    sp.add_argument("--max-accuracy-drop", type=float, default=None,
                    help="stop at the first round more than this below the base validation accuracy and "
                    "keep the smallest round within it (e.g. 0.02 = 2 points); default: none, every round "
                    "runs and the target is reached")
    _add_compress_training(sp)
    sp.add_argument("--round-to", type=int, default=1, help="keep channel counts in multiples of this")
    sp.add_argument("--checkpoint-dir", help="save each round here; rerun with it to resume")
    sp.add_argument("--limit", type=int, help="use at most this many training samples")
    sp.add_argument("--unsafe", action="store_true")
    sp.set_defaults(func=cmd_compress)

    sp = add("grow", "grow an Inception net on a dataset (optionally then compress it)", "tf-gpp grow --data digits --max-rounds 3")
    sp.add_argument("--data", required=True, help=data_help)
    sp.add_argument("-o", "--output")
    from tf_gpp.grow import grow as grow_fn  # its defaults are the command's: one source of truth

    grow_defaults = {k: p.default for k, p in inspect.signature(grow_fn).parameters.items()}
    sp.add_argument("--max-rounds", type=int, default=grow_defaults["max_rounds"],
                    help=f"growth rounds at most (default {grow_defaults['max_rounds']})")
    sp.add_argument("--max-params", type=int)
    sp.add_argument("--epochs-per-round", type=int, default=grow_defaults["epochs_per_round"],
                    help=f"epochs per candidate (default {grow_defaults['epochs_per_round']})")
    sp.add_argument("--then-compress", type=float, metavar="TARGET_MACS", help="then compress to this MACs fraction (compress's defaults)")
    sp.add_argument("--limit", type=int)
    sp.set_defaults(func=cmd_grow)

    sp = add("convert", "convert a .keras model to .tflite (float, float16, dynamic or int8)", "tf-gpp convert slim.keras --quantization int8 --data fashion_mnist")
    sp.add_argument("model")
    sp.add_argument("-o", "--output")
    sp.add_argument("--quantization", choices=list(quantization.names()), default=None,
                    help="; ".join(f"{n}: {quantization.get(n).description}" for n in quantization.names()))
    sp.add_argument("--data", help=f"calibration + verification data: {registry.help_text()}")
    sp.add_argument("--verify-samples", type=int, default=VERIFY_SAMPLES,
                    help=f"images compared with the Keras model (default {VERIFY_SAMPLES}: one image = 0.1 point; "
                    "all when the data holds fewer)")
    sp.add_argument("--select-tf-ops", action="store_true",
                    help="allow TensorFlow ops outside the TFLite builtins (needs the Flex delegate at runtime)")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--unsafe", action="store_true")
    sp.set_defaults(func=cmd_convert)

    sp = add("bench", "LiteRT latency of one .tflite, or two interleaved with their ratio", "tf-gpp bench base.tflite slim.tflite")
    sp.add_argument("tflite", nargs="+")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--runs", type=int, default=100)
    sp.set_defaults(func=cmd_bench)

    sp = add("report", "PNG/HTML report of a demo/compress run folder", "tf-gpp report gpp_runs/demo-20261122-101500")
    sp.add_argument("run_dir")
    sp.set_defaults(func=cmd_report)
    return p


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    print(f"tf-gpp: {category.__name__}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # before the parser: its choices come from the registries the modules extend
        for module in _modules_to_import(argv):
            import_user_module(module)
    except UserError as e:
        if "--verbose" in argv or "-v" in argv:
            traceback.print_exc()
        print(f"tf-gpp: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(["--verbose"] if args.verbose else [])])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tf_gpp.convert import ConversionError

    try:
        with warnings.catch_warnings():  # notices (e.g. the float32 copy of a mixed-precision model) on one line
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except (TfGppError, FileNotFoundError) as e:
        if args.verbose:
            traceback.print_exc()
        lines = str(e).splitlines() or [type(e).__name__]
        keep = 2 if isinstance(e, ConversionError) else 1  # a conversion failure: the layer, then the fix
        print(f"tf-gpp {args.command}: error: " + "\n".join(lines[:keep]), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tf-gpp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
