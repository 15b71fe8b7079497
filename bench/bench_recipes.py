"""Time-to-accuracy of the shipped Fashion-MNIST recipes: the whole `adlab train` process.

Each recipe runs as its own process (start-up, data loading, training, test evaluation,
figures and all); wall clock, peak resident memory and the test metric are recorded.
`python bench/bench_recipes.py fast` runs only the recipes that take minutes;
`python bench/bench_recipes.py fmnist_best` runs the named recipes only and keeps the saved
rows of the others.

Both classification recipes also run with two more seeds: a goal that holds for seed 0 only
is reported as such (the spread over seeds is as large as the margins here).

The time goals were set at the machine-speed reference's REFERENCE_IMG_S (common.py); each is scaled by the
reference measured at the start of this run: a slower or busier machine gets a longer budget, a faster one a
shorter.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REFERENCE_IMG_S, RESULTS, adlab_train, machine_speed, record, scaled_budget  # noqa: E402

GIB = 1024.0
# (config, metric, target, "higher"|"lower", seconds allowed, long-running, extra seeds)
RECIPES = [
    ("configs/fmnist_fast.yaml", "accuracy", 0.940, "higher", 180, False, (1, 2)),
    ("configs/autoencoders/fmnist_ae_fast.yaml", "test_mse", 0.012, "lower", 300, False, ()),
    ("configs/fmnist_best.yaml", "accuracy", 0.950, "higher", 900, True, (1, 2)),
]


def main(only_fast: bool, names: list[str]) -> None:
    speed = machine_speed()
    rows = [{"measure": "machine speed (plain AE loop, fp32)", "value": speed, "unit": "img/s",
             "goal": f"reference {REFERENCE_IMG_S:,.0f}", "met": None}]
    for config, metric, target, better, at_reference, long_running, seeds in RECIPES:
        if (long_running and only_fast) or (names and Path(config).stem not in names):
            continue
        allowed = round(scaled_budget(at_reference, speed))
        with tempfile.TemporaryDirectory() as tmp:
            seconds, rss_mib, metrics = adlab_train(config, Path(tmp) / "run")
            if (Path(tmp) / "run" / "latents.npz").is_file():  # real codes for bench_tsne.py
                shutil.copyfile(Path(tmp) / "run" / "latents.npz", RESULTS / "fmnist_ae_latents.npz")
        value = metrics[metric]
        met = meets(value, target, better)
        name = Path(config).stem
        rows += [
            {"measure": f"{name}: test {metric}", "value": value, "unit": "",
             "goal": f"{'>=' if better == 'higher' else '<='} {target}", "met": met},
            {"measure": f"{name}: whole process", "value": seconds, "unit": "s",
             "goal": f"<= {allowed} s ({at_reference} s at the reference)",
             "met": seconds <= allowed},
            {"measure": f"{name}: training loop", "value": metrics["train_seconds"], "unit": "s", "goal": "-",
             "met": None},
            {"measure": f"{name}: peak resident memory", "value": rss_mib / GIB, "unit": "GiB", "goal": "<= 2 GiB",
             "met": rss_mib / GIB <= 2.0},
        ]
        if seeds:
            rows += seed_spread(config, metric, target, better, allowed, value, seconds, seeds)
    if names:  # keep the saved rows of the recipes that did not run
        saved = RESULTS / "recipes.json"
        kept = json.loads(saved.read_text())["rows"] if saved.is_file() else []
        rows = [r for r in kept if r["measure"].split(":")[0].split(",")[0] not in names and
                not r["measure"].startswith("machine speed")] + rows
    record("recipes", rows)


def meets(value: float, target: float, better: str) -> bool:
    return value >= target if better == "higher" else value <= target


def seed_spread(config, metric, target, better, allowed, value, seconds, seeds) -> list[dict]:
    """The recipe again with other seeds: how many runs meet both goals, and the metric's range."""
    values, times = [value], [seconds]
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            t, _, m = adlab_train(config, Path(tmp) / "run", f"train.seed={seed}")
        values.append(m[metric])
        times.append(t)
        print(f"  seed {seed}: {metric} {m[metric]:.4f} in {t:.1f} s")
    good = sum(meets(v, target, better) and t <= allowed for v, t in zip(values, times))
    name = Path(config).stem
    return [
        {"measure": f"{name}, seeds 0-{max(seeds)}: test {metric} mean (min-max)",
         "value": sum(values) / len(values), "unit": f"({min(values):.4f}-{max(values):.4f})", "goal": "-",
         "met": None},
        {"measure": f"{name}, seeds 0-{max(seeds)}: whole process, slowest", "value": max(times), "unit": "s",
         "goal": f"<= {allowed} s", "met": max(times) <= allowed},
        {"measure": f"{name}, seeds 0-{max(seeds)}: runs meeting both goals", "value": good,
         "unit": f"of {len(values)}", "goal": f"{len(values)} of {len(values)}", "met": good == len(values)},
    ]


if __name__ == "__main__":
    main(only_fast="fast" in sys.argv[1:], names=[a for a in sys.argv[1:] if a != "fast"])
