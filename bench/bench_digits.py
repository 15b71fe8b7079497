"""The shipped digits recipe: whole `adlab train` process wall clock and test accuracy
(goal: accuracy >= 0.97 in under a minute on a 2-core CPU)."""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, timed_command  # noqa: E402

adlab = str(Path(sys.executable).parent / "adlab")
with tempfile.TemporaryDirectory() as tmp:
    seconds, result = timed_command([adlab, "train", "configs/digits_cnn.yaml", "--out", f"{tmp}/run",
                                     "--set", "train.progress_bar=false", "--quiet"])
    assert result.returncode == 0, result.stderr
    metrics = json.loads(Path(tmp, "run", "metrics.json").read_text())
record("digits", [
    {"measure": "digits_cnn.yaml test accuracy", "value": metrics["accuracy"], "unit": "", "goal": ">= 0.97",
     "met": metrics["accuracy"] >= 0.97},
    {"measure": "whole adlab train process", "value": seconds, "unit": "s", "goal": "< 60 s", "met": seconds < 60},
    {"measure": "training loop only (train_seconds)", "value": metrics["train_seconds"], "unit": "s", "goal": "-",
     "met": None},
])
