"""`make bench`: run every bench_*.py, then collect bench/results/*.json into bench/results/README.md.

`python bench/run_all.py fast` leaves out the 15-minute recipe (bench_recipes.py fast);
`python bench/run_all.py collect` only rebuilds the table from the saved results (after running
one benchmark by hand)."""

import json
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
from common import number  # noqa: E402

failed = []
for script in [] if "collect" in sys.argv[1:] else sorted(here.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    if subprocess.run([sys.executable, str(script), *sys.argv[1:]], cwd=here.parent).returncode != 0:
        failed.append(script.name)

lines = ["# Benchmark results", "", "| benchmark | measure | value | goal | met |", "|---|---|---:|---|---|"]
for path in sorted((here / "results").glob("*.json")):
    data = json.loads(path.read_text())
    for row in data["rows"]:
        met = "" if row.get("met") is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {data['benchmark']} | {row['measure']} | {number(row['value'])} {row['unit']} | {row['goal']} | {met} |")
(here / "results" / "README.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if failed else 0)
