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


def with_saved_rows(name: str, rows: list[dict], keys: list[str]) -> list[dict]:
    """`rows` after the saved rows of results/<name>.json whose study (the measure's first letter) is not in
    `keys`: a benchmark run for some studies keeps the others' results. All rows when `keys` is empty."""
    saved = RESULTS / f"{name}.json"
    if not keys or not saved.is_file():
        return rows
    return [r for r in json.loads(saved.read_text())["rows"] if r["measure"][:1] not in keys] + rows


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


# --- the machine-speed reference ---------------------------------------------------------------------------
# Time goals are stated per unit of it: a plain PyTorch loop training assignment F's 16-32-32 autoencoder
# (fp32, channels-last, batch 256, Fashion-MNIST images in memory; random ones where Debian's package is not
# installed), the median of three rounds of 30 steps, measured in the same run as the goal (one round varies by
# up to 25% on a shared VM: 4,069 to 5,363 img/s within a minute). The Fashion-MNIST goals were set on
# 2026-11-22, when it measured REFERENCE_IMG_S.
REFERENCE_IMG_S = 4021.0
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def plain_ae_loop(x, channels_last: bool, bf16: bool, steps: int = 30, channels=(16, 32, 32)) -> float:
    """Images per second of the median training step of F's autoencoder in a plain loop (MSE summed per image,
    Adam, batch 256): the fastest a notebook gets."""
    import statistics

    import torch
    import torch.nn.functional as F

    from adlab.models.autoencoders import AutoEncoder

    batch = 256
    torch.manual_seed(0)
    net = AutoEncoder(1, (28, 28), 10, channels, dropout=0.2)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    times = []
    for step in range(steps + 5):
        images = x[(step * batch) % (len(x) - batch) :][:batch].contiguous(memory_format=layout)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            recon = net(images)["recon"]
        loss = F.mse_loss(recon.float(), images, reduction="none").flatten(1).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 5:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def machine_speed() -> float:
    """The reference's images per second on this machine now (about 15 s)."""
    import statistics

    import torch

    torch.manual_seed(0)
    if FASHION_MNIST.is_file():
        from adlab.data.idx import read_idx

        x = torch.from_numpy(read_idx(FASHION_MNIST)[:10240].copy()).unsqueeze(1).float().div(255.0)
    else:
        x = torch.rand(10240, 1, 28, 28)
    return statistics.median(plain_ae_loop(x, channels_last=True, bf16=False) for _ in range(3))


def scaled_budget(seconds_at_reference: float, speed: float, reference: float = REFERENCE_IMG_S) -> float:
    """A time goal set at `reference` (REFERENCE_IMG_S unless said), for a machine measuring `speed` now."""
    return seconds_at_reference * reference / speed


# --- the bf16 reference --------------------------------------------------------------------------------------
# The Fashion-MNIST recipes train in bf16, and most of their step is bf16 convolutions. The plain AE loop above is
# fp32 and bound by memory and per-op costs: it does not follow a CPU's bf16 speed. On 2026-12-07 (an AMD EPYC
# VM) it read 3,259-5,958 img/s, 0.8-1.5x its 2026-11-22 value, while the bf16 matmul below read 381-396 GFLOP/s,
# 0.53x, and fmnist_fast (bf16, deterministic: the same 0.9439) took 255 s against 151 s: by the AE loop its
# 180 s goal shrank to 136 s, by the bf16 matmul it grew to 337 s. A bf16 recipe's goal scales by this one.
REFERENCE_BF16_GFLOPS = 731.0  # bench_throughput.py's bf16 matmul on 2026-11-22 (results/throughput.json)


def matmul_peak(dtype, n: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of an n x n matrix product in `dtype` on this machine now."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def bf16_speed() -> float:
    """The bf16 reference on this machine now: the median of three bf16 matmul peaks (about 5 s)."""
    import statistics

    import torch

    return statistics.median(matmul_peak(torch.bfloat16) for _ in range(3))
