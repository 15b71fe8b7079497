"""Start-up time of `adlab --help` (goal <= 1.5 s: heavy modules are imported lazily)."""

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record, timed_command  # noqa: E402

adlab = str(Path(sys.executable).parent / "adlab")
times = []
for _ in range(5):
    seconds, result = timed_command([adlab, "--help"])
    assert result.returncode == 0, result.stderr
    times.append(seconds)
median = statistics.median(times)
record("startup", [{"measure": "adlab --help, median of 5", "value": median, "unit": "s", "goal": "<= 1.5 s",
                    "met": median <= 1.5}])
