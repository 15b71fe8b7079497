"""Scale-out through Lightning: DDP with two CPU processes (gloo) gives the usual run directory."""

import csv
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_two_cpu_processes_share_one_run_directory(tmp_path):
    """Lightning's launcher re-runs the command once per extra device; rank 0 alone owns the folder."""
    out_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "adlab",
        "train",
        "configs/digits_cnn.yaml",
        "--out",
        str(out_dir),
        "--quiet",
        "--set",
        "train.epochs=2",
        "--set",
        "train.accelerator=cpu",
        "--set",
        "train.devices=2",
        "--set",
        "train.strategy=ddp",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["num_test"] == 360 and metrics["accuracy"] > 0.5
    with open(out_dir / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]
    assert (out_dir / "checkpoints" / "best.ckpt").is_file()
    assert not list(tmp_path.glob("*/*.tmp"))
