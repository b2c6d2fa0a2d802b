"""``tf-gpp``: the command line (also ``python -m tf_gpp``).

With no arguments it runs the main job on an embedded default (``tf-gpp demo``).
User errors exit with code 2 and a one-line message; ``--verbose`` shows details.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  tf-gpp                                   # the main job: train, push, prune, convert, bench (a few minutes)
  tf-gpp inspect model.keras               # channel groups, params and MACs per layer
  tf-gpp compress model.keras --data fashion_mnist --target-macs 0.3 -o slim.keras
  tf-gpp grow --data digits --max-rounds 3 -o grown.keras
  tf-gpp convert slim.keras -o slim.tflite --quantization int8 --data fashion_mnist
  tf-gpp bench base.tflite slim.tflite --threads 1
  tf-gpp report gpp_runs/demo-20261122-101500
"""


class UserError(Exception):
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


def _load_data(spec: str, limit: int | None, batch_size: int = 128) -> Any:
    from tf_gpp import data

    if spec in ("fashion_mnist", "fashion-mnist"):
        return data.load_fashion_mnist(limit=limit, batch_size=batch_size)
    if spec == "digits":
        return data.load_digits(limit=limit, batch_size=batch_size)
    if spec == "default":
        return data.load_default(limit=limit, batch_size=batch_size)
    p = Path(spec)
    if p.is_dir():
        raise UserError(f"--data {spec}: for an image folder use tf_gpp.data.from_image_folder in Python "
                        "(it needs an image size); the CLI takes fashion_mnist, digits or default")
    raise UserError(f"--data {spec}: unknown dataset; use fashion_mnist, digits or default")


def _out_path(path: str | None, default: Path, inputs: list[str]) -> Path:
    out = Path(path) if path else default
    for i in inputs:
        if Path(i).exists() and out.resolve() == Path(i).resolve():
            raise UserError(f"-o {out}: refusing to overwrite the input file; choose another output path")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _save_model(model: Any, out: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".keras")
    os.close(fd)
    model.save(tmp)
    os.replace(tmp, out)


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
        print(f"  #{g.index:<3} size {g.size:<5} producers {', '.join(g.producers)}"
              + (f"  | consumers {', '.join(g.consumers)}" if args.all else ""))
    frozen = dep.frozen_reasons()
    if frozen and args.all:
        print("\nnot prunable:")
        for layer, why in frozen.items():
            print(f"  {layer}: {why}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    import tf_gpp

    model = _load_model(args.model, args.unsafe)
    out = _out_path(args.output, Path(args.model).with_name(Path(args.model).stem + "_gpp.keras"), [args.model])
    ds = _load_data(args.data, args.limit)
    res = tf_gpp.compress(
        model, ds.train, ds.val if ds.val is not None else ds.test,
        target_macs=args.target_macs, target_params=args.target_params,
        max_accuracy_drop=args.max_accuracy_drop, importance=args.importance, push=not args.no_push,
        rounds=args.rounds, push_epochs=args.push_epochs, finetune_epochs=args.finetune_epochs,
        round_to=args.round_to, distill=args.distill, checkpoint_dir=args.checkpoint_dir,
        strategy="global" if (args.target_macs or args.target_params) else "threshold",
        verbose=2 if args.verbose else 1,
    )
    _save_model(res.model, out)
    print(res.summary())
    print(f"saved {out}")
    return 0


def cmd_grow(args: argparse.Namespace) -> int:
    from tf_gpp.grow import grow

    ds = _load_data(args.data, args.limit)
    out = _out_path(args.output, Path("grown.keras"), [])
    res = grow(ds.train, ds.val, ds.input_shape, ds.num_classes, max_rounds=args.max_rounds,
               max_params=args.max_params, epochs_per_round=args.epochs_per_round, verbose=1)
    model = res.model
    if args.then_compress:
        import tf_gpp

        model = tf_gpp.compress(model, ds.train, ds.val, target_macs=args.then_compress, verbose=1).model
    _save_model(model, out)
    print(res.summary())
    print(f"saved {out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from tf_gpp.convert import to_tflite, verify

    model = _load_model(args.model, args.unsafe)
    out = _out_path(args.output, Path(args.model).with_suffix(".tflite"), [args.model])
    rep = None
    ds = None
    if args.data:
        ds = _load_data(args.data, args.limit or 2000)
        rep = ds.as_numpy("train")[0][:200]
    elif args.quantization == "int8":
        raise UserError("--quantization int8 needs --data (representative samples for calibration)")
    path = to_tflite(model, out, quantization=args.quantization, representative_data=rep)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if ds is not None:
        x, y = ds.as_numpy("test" if ds.test is not None else "val")
        print(verify(path, model, x[:1000], y[:1000]))
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
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tf-gpp",
        description="Grow-Push-Prune for Keras 3: compress classifiers into slim, fast TFLite models.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--verbose", "-v", action="store_true", help="show details and tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS)
        return sp

    d = add("demo", "the main job on an embedded default (also what plain 'tf-gpp' runs)", "tf-gpp demo --quick")
    d.add_argument("--data", default="default", help="fashion_mnist, digits or default (Fashion-MNIST if found locally, else digits)")
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

    sp = add("compress", "push and prune a .keras classifier to a target", "tf-gpp compress m.keras --data fashion_mnist --target-macs 0.3 -o slim.keras")
    sp.add_argument("model")
    sp.add_argument("--data", required=True, help="fashion_mnist, digits or default")
    sp.add_argument("-o", "--output", help="output .keras (default: <model>_gpp.keras)")
    sp.add_argument("--target-macs", type=float, help="fraction of base MACs (e.g. 0.3) or absolute")
    sp.add_argument("--target-params", type=float, help="fraction of base params or absolute")
    sp.add_argument("--max-accuracy-drop", type=float, default=0.02)
    sp.add_argument("--importance", default="gpp_lda", help="gpp_lda (default), gpp, gpp_linear, l1, bn_scale, taylor, random")
    sp.add_argument("--no-push", action="store_true", help="prune without push training (CVIU LDA-prune)")
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--push-epochs", type=int, default=1)
    sp.add_argument("--finetune-epochs", type=int, default=2)
    sp.add_argument("--round-to", type=int, default=1, help="keep channel counts in multiples of this")
    sp.add_argument("--distill", action="store_true", help="fine-tune with distillation from the original")
    sp.add_argument("--checkpoint-dir", help="save each round here; rerun with it to resume")
    sp.add_argument("--limit", type=int, help="use at most this many training samples")
    sp.add_argument("--unsafe", action="store_true")
    sp.set_defaults(func=cmd_compress)

    sp = add("grow", "grow an Inception net on a dataset (optionally then compress it)", "tf-gpp grow --data digits --max-rounds 3")
    sp.add_argument("--data", required=True)
    sp.add_argument("-o", "--output")
    sp.add_argument("--max-rounds", type=int, default=3)
    sp.add_argument("--max-params", type=int)
    sp.add_argument("--epochs-per-round", type=int, default=2)
    sp.add_argument("--then-compress", type=float, metavar="TARGET_MACS", help="then push+prune to this MACs fraction")
    sp.add_argument("--limit", type=int)
    sp.set_defaults(func=cmd_grow)

    sp = add("convert", "convert a .keras model to .tflite (float, float16, dynamic or int8)", "tf-gpp convert slim.keras --quantization int8 --data fashion_mnist")
    sp.add_argument("model")
    sp.add_argument("-o", "--output")
    sp.add_argument("--quantization", choices=["float16", "dynamic", "int8"], default=None)
    sp.add_argument("--data", help="representative + verification data (fashion_mnist, digits, default)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(["--verbose"] if args.verbose else [])])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tf_gpp.errors import TfGppError

    try:
        return int(args.func(args) or 0)
    except (UserError, TfGppError, FileNotFoundError) as e:
        if args.verbose:
            traceback.print_exc()
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"tf-gpp {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tf-gpp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
