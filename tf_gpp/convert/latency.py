"""On-device-style latency of ``.tflite`` files: single models and interleaved A/B runs.

Only ``interpreter.invoke()`` is timed (``time.perf_counter_ns``), on a fixed
random input set once, with the garbage collector paused. With one thread the
thread's CPU time per invoke (``time.thread_time_ns``) is recorded as well: on a
shared, oversubscribed machine the wall clock also counts time the benchmark
thread spent preempted, which inflates long invokes more than short ones,
while CPU time does not. Comparing two
models in separate runs on a shared or thermally throttled CPU mixes model
differences with machine drift; :func:`benchmark_interleaved` and
:func:`benchmark_ab` therefore run the models round-robin in one loop and
rotate which model goes first each round (A B, B A, ...), so slow phases of
the machine hit all models alike.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_gpp.convert.errors import ConversionError
from tf_gpp.convert.interpreter import load_interpreter, runtime_info


@dataclass(frozen=True)
class LatencyReport:
    """Latency statistics of one model, in milliseconds per ``invoke()``."""

    path: str
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    runs: int
    warmup: int
    threads: int
    size_bytes: int
    runtime: str
    runtime_version: str
    cpu_median_ms: float | None = None
    """Median CPU time of the invoking thread (``threads == 1`` only, else ``None``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{Path(self.path).name}: median {self.median_ms:.3f} ms, p90 {self.p90_ms:.3f}, "
            f"mean {self.mean_ms:.3f}, min {self.min_ms:.3f}"
            + (f", CPU {self.cpu_median_ms:.3f}" if self.cpu_median_ms is not None else "")
            + f" ({self.runs} runs, "
            f"{self.threads} thread{'s' if self.threads != 1 else ''}, "
            f"{self.size_bytes / 1024:.1f} KiB, {self.runtime} {self.runtime_version})"
        )


@dataclass(frozen=True)
class ABReport:
    """Interleaved comparison of two models; ``ratio = a.median_ms / b.median_ms``.

    With ``a`` the original and ``b`` the pruned model, ``ratio`` is the
    speed-up of ``b``. ``paired_ratio`` is the median of per-round ratios
    a_i / b_i, which cancels drift within a round.
    """

    a: LatencyReport
    b: LatencyReport
    ratio: float
    paired_ratio: float
    rounds: int

    @property
    def min_ratio(self) -> float:
        """``a.min_ms / b.min_ms``: the best case of each, robust to interference."""
        return self.a.min_ms / self.b.min_ms

    @property
    def cpu_ratio(self) -> float | None:
        """Ratio of median thread CPU times (single-thread runs only)."""
        if self.a.cpu_median_ms is None or self.b.cpu_median_ms is None:
            return None
        return self.a.cpu_median_ms / self.b.cpu_median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "ratio": self.ratio,
            "paired_ratio": self.paired_ratio,
            "min_ratio": self.min_ratio,
            "cpu_ratio": self.cpu_ratio,
            "rounds": self.rounds,
        }

    def __str__(self) -> str:
        cpu = f", CPU time {self.cpu_ratio:.3f}" if self.cpu_ratio is not None else ""
        return (
            f"A {self.a}\nB {self.b}\n"
            f"median A / median B = {self.ratio:.3f} (paired per-round {self.paired_ratio:.3f}, "
            f"min {self.min_ratio:.3f}{cpu}; {self.rounds} interleaved rounds)"
        )


def benchmark(
    path: str | os.PathLike[str],
    threads: int = 1,
    warmup: int = 10,
    runs: int = 100,
    *,
    max_seconds: float | None = None,
    seed: int = 0,
) -> LatencyReport:
    """Time ``runs`` invocations of one model after ``warmup`` untimed ones.

    ``max_seconds`` stops the timed loop early (at least one run is kept).
    """
    return benchmark_interleaved(
        [path], threads=threads, warmup=warmup, rounds=runs, max_seconds=max_seconds, seed=seed
    )[0]


def benchmark_ab(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    threads: int = 1,
    rounds: int = 100,
    *,
    warmup: int = 10,
    max_seconds: float | None = None,
    seed: int = 0,
) -> ABReport:
    """Time two models interleaved (A, B, B, A, ...) and report both and their ratio."""
    samples: list[np.ndarray] = []
    report_a, report_b = benchmark_interleaved(
        [path_a, path_b],
        threads=threads,
        warmup=warmup,
        rounds=rounds,
        max_seconds=max_seconds,
        seed=seed,
        _samples=samples,
    )
    per_round = samples[0] / samples[1]
    return ABReport(
        a=report_a,
        b=report_b,
        ratio=report_a.median_ms / report_b.median_ms,
        paired_ratio=float(np.median(per_round)),
        rounds=len(per_round),
    )


def benchmark_interleaved(
    paths: Sequence[str | os.PathLike[str]],
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 100,
    *,
    max_seconds: float | None = None,
    seed: int = 0,
    _samples: list[np.ndarray] | None = None,
) -> list[LatencyReport]:
    """Time several models round-robin in one loop; one report per path, in order.

    Each round invokes every model once; the starting model rotates each
    round. All models get the same number of timed runs.
    """
    if not paths:
        raise ConversionError("benchmark needs at least one .tflite path.")
    for name, value, low in (
        ("threads", threads, 1),
        ("warmup", warmup, 0),
        ("runs/rounds", rounds, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConversionError(f"{name} must be an int >= {low}, got {value!r}.")
    if max_seconds is not None and max_seconds <= 0:
        raise ConversionError(f"max_seconds must be positive, got {max_seconds}.")

    interpreters = [load_interpreter(p, num_threads=threads) for p in paths]
    rng = np.random.default_rng(seed)
    invokers = [_prepare(interp, rng) for interp in interpreters]
    k = len(invokers)

    for _ in range(warmup):
        for invoke in invokers:
            invoke()

    times = np.zeros((k, rounds), dtype=np.float64)
    cpu_times = np.zeros((k, rounds), dtype=np.float64)
    done = 0
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    deadline = None if max_seconds is None else clock() + int(max_seconds * 1e9)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for j in range(k):
                m = (r + j) % k
                invoke = invokers[m]
                cpu_start = cpu_clock()
                start = clock()
                invoke()
                times[m, r] = clock() - start
                cpu_times[m, r] = cpu_clock() - cpu_start
            done = r + 1
            if deadline is not None and clock() > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()

    times_ms = times[:, :done] / 1e6
    cpu_ms = cpu_times[:, :done] / 1e6
    if _samples is not None:
        _samples.extend(times_ms)
    runtime = runtime_info()
    return [
        _report(p, t, c if threads == 1 else None, warmup, threads, runtime.name, runtime.version)
        for p, t, c in zip(paths, times_ms, cpu_ms, strict=True)
    ]


def _prepare(interpreter: Any, rng: np.random.Generator) -> Any:
    """Fill every input with random data once; return the bound ``invoke``."""
    for detail in interpreter.get_input_details():
        shape = [max(int(d), 1) for d in detail["shape"]]
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            data = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            data = rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(
                dtype
            )
        elif dtype.kind == "b":
            data = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            raise ConversionError(f"cannot benchmark an input of dtype {dtype} ({detail['name']}).")
        interpreter.set_tensor(detail["index"], data)
    return interpreter.invoke


def _report(
    path: str | os.PathLike[str],
    t: np.ndarray,
    cpu: np.ndarray | None,
    warmup: int,
    threads: int,
    name: str,
    version: str,
) -> LatencyReport:
    return LatencyReport(
        path=str(path),
        median_ms=float(np.median(t)),
        p90_ms=float(np.percentile(t, 90)),
        mean_ms=float(np.mean(t)),
        min_ms=float(np.min(t)),
        std_ms=float(np.std(t)),
        runs=int(t.size),
        warmup=warmup,
        threads=threads,
        size_bytes=Path(path).stat().st_size,
        runtime=name,
        runtime_version=version,
        cpu_median_ms=None if cpu is None else float(np.median(cpu)),
    )
