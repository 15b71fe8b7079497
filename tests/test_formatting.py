"""The one number format (adlab/formatting.py) and the three places that write numbers with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adlab.formatting import format_number
from adlab.run.table import metrics_table
from adlab.study.report import _cell
from adlab.tasks.classify.outputs import summary_line


@pytest.mark.parametrize(
    "value, key, text",
    [
        (None, "", "-"),
        (0.912345, "accuracy", "0.9123"),
        (1.0, "accuracy", "1.0000"),
        (-0.00004, "", "-0.0000"),
        (12.345678, "val_loss", "12.3457"),  # 4 decimals up to 100 (adlab table wrote 12.3 before)
        (99.99994, "", "99.9999"),
        (100.0, "", "100.0"),
        (-1234.56, "", "-1234.6"),
        (5.234, "train_seconds", "5.2"),  # timings: 1 decimal at any size
        (0.04, "seconds", "0.0"),
        (np.float32(0.5), "", "0.5000"),  # NumPy floats are floats too
        (np.float64(250.25), "", "250.2"),
        (float("nan"), "", "nan"),
        (7, "epochs", "7"),  # whole numbers stay whole
        (np.int64(3), "train_seconds", "3"),
        (True, "", "True"),
        ("resnet18", "model", "resnet18"),
    ],
)
def test_format_number(value, key, text):
    assert format_number(value, key) == text


def test_report_cells_use_it():
    for value, column in [(0.123456, "accuracy"), (12.5, "train_seconds"), (123.456, "x"), (None, "y"), (4, "z")]:
        assert _cell(value, column) == format_number(value, column)


def test_run_summary_line_uses_it():
    metrics = {"accuracy": 0.912345, "mean_class_accuracy": np.float32(0.25), "macro_f1": None, "other": 0.5}
    assert summary_line(metrics) == "accuracy=0.9123  mean_class_accuracy=0.2500"


def test_metrics_table_uses_it(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.87654, "train_seconds": 8.26, "missing": None}))
    other = tmp_path / "r2"
    other.mkdir()
    (other / "metrics.json").write_text(json.dumps({"loss": 12.5}))
    table = metrics_table([run, other], ["accuracy", "train_seconds", "loss", "missing"])
    assert table.splitlines()[-2] == "| r1 | 0.8765 | 8.3 | - | - |"
    assert table.splitlines()[-1] == "| r2 | - | - | 12.5000 | - |"
