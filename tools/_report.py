"""Shared helpers of the benchmark scripts: machine facts, JSON/markdown writers."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

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


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


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
