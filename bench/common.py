"""Shared helpers for benchmarks: each writes bench/results/<name>.json with figure, goal and verdict."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def record(name: str, rows: list[dict]) -> None:
    """rows: {"measure", "value", "unit", "goal", "met"}; printed side by side and saved."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": f"{cpu_model()}, {_cores()} cores", "python": sys.version.split()[0],
               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    for row in rows:
        verdict = "" if row.get("met") is None else ("  OK" if row["met"] else "  MISSED")
        print(f"{name:>12} | {row['measure']:<42} {number(row['value']):>10} {row['unit']:<8} goal {row['goal']}{verdict}")


def number(value: float) -> str:
    """Four decimals below 1 (accuracies, MSEs: the goals sit in the third), else three."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.3f}"


def timed_command(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, result


def cpu_model() -> str:
    """The CPU's model name (a shared VM's timings differ by 1.5x between CPU models: say which one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def adlab_train(config: str, out: str | Path, *overrides: str) -> tuple[float, float, dict]:
    """Run `adlab train` as its own process: (wall seconds, peak resident MiB, metrics.json)."""
    import os

    args = [str(Path(sys.executable).parent / "adlab"), "train", config, "--out", str(out), "--overwrite",
            "--set", "train.progress_bar=false", "--quiet", *[a for o in overrides for a in ("--set", o)]]
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"adlab train {config} failed:\n{output[-3000:]}")
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    return seconds, usage.ru_maxrss / 1024, metrics  # ru_maxrss is in KiB on Linux
