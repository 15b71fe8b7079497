"""`make bench`: run every bench_*.py, then collect bench/results/*.json into bench/results/README.md.

`python bench/run_all.py fast` leaves out the 15-minute recipe (bench_recipes.py fast)."""

import json
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
failed = []
for script in sorted(here.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    if subprocess.run([sys.executable, str(script), *sys.argv[1:]], cwd=here.parent).returncode != 0:
        failed.append(script.name)

lines = ["# Benchmark results", "", "| benchmark | measure | value | goal | met |", "|---|---|---:|---|---|"]
for path in sorted((here / "results").glob("*.json")):
    data = json.loads(path.read_text())
    for row in data["rows"]:
        met = "" if row.get("met") is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {data['benchmark']} | {row['measure']} | {row['value']:.3f} {row['unit']} | {row['goal']} | {met} |")
(here / "results" / "README.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if failed else 0)
