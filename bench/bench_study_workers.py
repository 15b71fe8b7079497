"""The shipped digits learning-rate study (configs/studies/lr_steplr_epochs.yaml, 24 runs) made one
run after another with 2 CPU threads, against `--workers 2` with one thread each, on the same
machine (goal: workers at least 1.6x faster on 2 cores). Both are whole `adlab study` processes.

    python bench/bench_study_workers.py [--set key=value ...]   # extra --set items for both (a shorter check)
"""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, timed_command  # noqa: E402

adlab = str(Path(sys.executable).parent / "adlab")
study = "configs/studies/lr_steplr_epochs.yaml"
extra = [a for a in sys.argv[1:] if a != "fast"]  # run_all.py passes "fast" on to every benchmark
with tempfile.TemporaryDirectory() as tmp:
    sequential, result = timed_command([adlab, "study", study, "--out", f"{tmp}/sequential",
                                        "--set", "train.num_threads=2", *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    workers, result = timed_command([adlab, "study", study, "--out", f"{tmp}/workers", "--workers", "2", *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(Path(tmp, "workers", "runs").glob("*/metrics.json"))
    threads = {json.loads((p.parent / "env.json").read_text())["torch_threads"] for p in runs}
ratio = sequential / workers
record("study_workers", [
    {"measure": f"24-run digits study, sequential, 2 threads{' ' + ' '.join(extra) if extra else ''}",
     "value": sequential, "unit": "s", "goal": "-", "met": None},
    {"measure": f"the same, --workers 2 ({'/'.join(map(str, sorted(threads)))} thread each)", "value": workers,
     "unit": "s", "goal": "-", "met": None},
    {"measure": "speed-up of --workers 2", "value": ratio, "unit": "x", "goal": ">= 1.6", "met": ratio >= 1.6},
])
