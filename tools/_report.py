"""The benchmark harness of ``tools/``: what every script shares, so a script holds its experiment alone.

* :func:`machine_info` / :func:`machine_line`: CPU, cores, library versions, commit;
* :func:`set_threads`, :func:`seeded` / :func:`seeds`: TensorFlow threads and reproducible seeds;
* :func:`write_json`, :func:`write_atomic`, :func:`markdown_table`, :func:`save_figure`: results;
* :func:`convert_and_time`: models -> ``.tflite`` through :func:`tf_gpp.convert.to_tflite`, timed
  interleaved (one loop, rotating order) with :func:`tf_gpp.convert.benchmark_interleaved`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tf_gpp.io import replace_atomic
from tf_gpp.io import write_atomic as _write_bytes

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def machine_info() -> dict:
    """CPU, cores, memory and library versions of this run."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("tensorflow", "keras", "numpy", "ai_edge_litert"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except ImportError:
            info[mod] = None
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        info["git_commit"] = None
    return info


def write_atomic(path: Path, text: str | bytes) -> None:
    """``text`` to ``path`` atomically (:func:`tf_gpp.io.write_atomic`)."""
    _write_bytes(path, text)


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure to ``path`` (``.png``/``.svg``) atomically."""
    return replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".")),
                          suffix=Path(path).suffix)


def set_threads(n: int) -> bool:
    """Pin TensorFlow to ``n`` intra-op and inter-op threads (call before any op runs); False
    when TensorFlow was already initialised (the call then changes nothing)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError:
        return False
    return True


def seeded(seed: int) -> int:
    """Seed Python, NumPy and Keras/TensorFlow (``keras.utils.set_random_seed``); returns ``seed``."""
    import keras

    keras.utils.set_random_seed(int(seed))
    return int(seed)


def seeds(values: int | Iterable[int]) -> Iterator[int]:
    """Iterate over seeds (``3`` means 0, 1, 2), seeding everything before each one is yielded."""
    for seed in range(values) if isinstance(values, int) else values:
        yield seeded(seed)


def convert_and_time(models: dict[str, Any], out_dir: Path, *, quantization: str | None = None,
                     representative_data: Any = None, threads: int = 1, rounds: int = 100, warmup: int = 10,
                     max_seconds: float | None = None) -> dict[str, dict]:
    """Convert each ``{name: keras model or .tflite path}`` with :func:`tf_gpp.convert.to_tflite`
    and time them all interleaved in one loop; ``{name: {"path", "size_bytes", **latency}}``."""
    from tf_gpp.convert import benchmark_interleaved, to_tflite

    paths = {}
    for name, model in models.items():
        if isinstance(model, str | os.PathLike):
            paths[name] = Path(model)
        else:
            paths[name] = Path(to_tflite(model, Path(out_dir) / f"{name}.tflite", quantization=quantization,
                                         representative_data=representative_data))
    reports = benchmark_interleaved(list(paths.values()), threads=threads, warmup=warmup, rounds=rounds,
                                    max_seconds=max_seconds)
    return {name: {"path": str(p), "size_bytes": p.stat().st_size, **rep.to_dict()}
            for (name, p), rep in zip(paths.items(), reports, strict=True)}


def write_json(name: str, payload: dict) -> Path:
    path = RESULTS / f"{name}.json"
    write_atomic(path, json.dumps(payload, indent=2, default=str))
    return path


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    body = "".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows)
    return head + body


def machine_line(info: dict) -> str:
    return (
        f"Machine: {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
        f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, LiteRT {info['ai_edge_litert']}; "
        f"{info['date']}, commit {info.get('git_commit')}."
    )
