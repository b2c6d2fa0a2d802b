"""benchmark / benchmark_ab: sane statistics, interleaving, and clear errors."""

from __future__ import annotations

import pytest

from tf_gpp.convert import (
    ABReport,
    ConversionError,
    LatencyReport,
    TFLiteFileError,
    benchmark,
    benchmark_ab,
    benchmark_interleaved,
)


def test_benchmark_statistics(float_tflite):
    report = benchmark(float_tflite, threads=1, warmup=3, runs=30)
    assert isinstance(report, LatencyReport)
    assert report.runs == 30
    assert 0 < report.min_ms <= report.median_ms <= report.p90_ms
    assert report.mean_ms > 0
    assert report.size_bytes == float_tflite.stat().st_size
    assert report.runtime == "ai-edge-litert"
    assert report.cpu_median_ms is not None and report.cpu_median_ms > 0
    assert "median" in str(report)


def test_benchmark_ab_ratio(float_tflite, int8_tflite):
    report = benchmark_ab(float_tflite, int8_tflite, threads=1, rounds=30, warmup=3)
    assert isinstance(report, ABReport)
    assert report.a.runs == report.b.runs == report.rounds == 30
    assert report.ratio > 0 and report.paired_ratio > 0
    assert report.ratio == pytest.approx(report.a.median_ms / report.b.median_ms)
    assert report.min_ratio > 0 and report.cpu_ratio > 0
    assert set(report.to_dict()) >= {"a", "b", "ratio", "paired_ratio", "min_ratio", "cpu_ratio"}
    assert "median A / median B" in str(report)


def test_same_model_ratio_near_one(float_tflite):
    report = benchmark_ab(float_tflite, float_tflite, rounds=200, warmup=10)
    assert 0.5 < report.paired_ratio < 2.0


def test_multi_thread_has_no_cpu_time(float_tflite):
    report = benchmark(float_tflite, threads=2, warmup=1, runs=5)
    assert report.threads == 2 and report.cpu_median_ms is None


def test_max_seconds_stops_early(float_tflite):
    (report,) = benchmark_interleaved([float_tflite], rounds=10_000_000, warmup=0, max_seconds=0.05)
    assert 1 <= report.runs < 10_000_000


def test_invalid_paths_and_arguments(float_tflite, tmp_path):
    with pytest.raises(TFLiteFileError, match="missing.tflite"):
        benchmark(tmp_path / "missing.tflite")
    with pytest.raises(TFLiteFileError):
        benchmark_ab(float_tflite, tmp_path / "missing.tflite")
    with pytest.raises(ConversionError, match="threads"):
        benchmark(float_tflite, threads=0)
    with pytest.raises(ConversionError, match="runs"):
        benchmark(float_tflite, runs=0)
