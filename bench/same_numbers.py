"""Same numbers before and after a refactoring: train a fixed list of small runs, compare two sets exactly.

    python bench/same_numbers.py run OUTDIR            # every run below into OUTDIR/<name>/ (OUTDIR must not exist)
    python bench/same_numbers.py compare DIR_A DIR_B   # per run: identical / differs; exit 1 if any differs

The runs are trained with whatever `adlab` the Python running this script imports, through the CLI
(`python -m adlab ...`, the most stable contract), so an older commit is measured with

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src python bench/same_numbers.py run /tmp/numbers-before
    python bench/same_numbers.py run /tmp/numbers-after
    python bench/same_numbers.py compare /tmp/numbers-before /tmp/numbers-after

OUTDIR/_about.json says which adlab (its file, and the git commit of its source tree) made the set.

The runs (all on scikit-learn's digits but the last, one thread, on the CPU, fixed seeds, 1-2 epochs):
classify (a small cnn), ae, vae, dae, finetune (the AE run's encoder fine-tuned as a classifier,
model.name: encoder), classify_seed1 (run 1 with another seed), fusion (`adlab fuse` of classify and
classify_seed1) and detect (yolov8n from scratch, 1 epoch, on tiny synthetic scenes made by
`adlab data synth-scenes --source digits`). A run that fails is reported and the others go on (a
run that needs it is skipped); `run` then exits 1.

`compare` reads each run's metrics.json, drops every key ending in "seconds" (timings, at any depth)
and writes absolute paths relative to the folder compared (a fusion's members: "classify"; a path
outside it: its last component), then reports every other difference exactly: no tolerance, and an
int is not a float.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.003, "num_threads": 1, "progress_bar": False,
         "accelerator": "cpu", "seed": 0}
CNN = {"conv_channels": [16, 32], "convs_per_block": 1, "hidden": [64]}
AUTOENCODER = {"latent_dim": 8, "conv_channels": [16, 32], "tsne_points": 100}
SCENES = ["--images", "24", "--source", "digits", "--size", "128x64", "--seed", "0", "--val-fraction", "0.25"]


def runs(out: Path) -> list[tuple[str, str, object]]:
    """(name, kind, spec) in training order: kind train (spec: config dict), fuse (spec: member names)
    or detect (spec: config dict whose data.root is made first by synth-scenes)."""
    def train(**changes) -> dict:
        return {**TRAIN, **changes}

    classify = {"task": "classify", "data": {"name": "digits"}, "model": {"name": "cnn", "cnn": CNN}, "train": train()}

    def autoencode(name: str, **keys) -> dict:
        return {"task": "autoencode", "data": {"name": "digits"},
                "model": {"name": name, "autoencoder": {**AUTOENCODER, **keys}}, "train": train()}
    return [
        ("classify", "train", classify),
        ("ae", "train", autoencode("ae")),
        ("vae", "train", autoencode("vae", beta=1.0, kl_warmup_epochs=1)),
        ("dae", "train", autoencode("dae", noise="salt_pepper", noise_strength=0.2)),
        ("finetune", "train", {"task": "classify", "data": {"name": "digits"},
                               "model": {"name": "encoder", "weights": str(out / "ae"), "freeze": False,
                                         "autoencoder": {"hidden": [64], "dropout": 0.3}},
                               "train": train()}),
        ("classify_seed1", "train", {**classify, "train": train(seed=1)}),
        ("fusion", "fuse", ["classify", "classify_seed1"]),
        ("detect", "detect", {"task": "detect", "data": {"name": "yolo", "root": str(out / "_scenes" / "data.yaml"),
                                                         "image_size": 64},
                              "model": {"name": "yolov8n", "weights": None},
                              "train": train(epochs=1, batch_size=8, lr=0.002)}),
    ]


NEEDS = {"finetune": ["ae"], "fusion": ["classify", "classify_seed1"]}
NAMES = [name for name, _, _ in runs(Path("/"))]


# ----------------------------------------------------------------------------------------------- run

def environment() -> dict:
    return dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", CUDA_VISIBLE_DEVICES="")


def adlab(args: list, cwd: Path, log: Path) -> bool:
    """`python -m adlab ARGS` with this interpreter (and its PYTHONPATH); output appended to log."""
    with log.open("a") as handle:
        handle.write(f"$ adlab {' '.join(map(str, args))}\n")
        handle.flush()
        done = subprocess.run([sys.executable, "-m", "adlab", *map(str, args)], cwd=cwd, env=environment(),
                              stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    return done.returncode == 0


def about_adlab(cwd: Path) -> dict:
    """Which adlab the runs use: asked of the same interpreter and environment as the runs."""
    probe = ("import json, adlab, torch, sys; print(json.dumps({'adlab_file': adlab.__file__, "
             "'adlab_version': adlab.__version__, 'torch': torch.__version__, 'python': sys.version.split()[0]}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=environment(), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"adlab cannot be imported by {sys.executable}:\n{done.stderr.strip()}")
    about = json.loads(done.stdout)
    source = Path(about["adlab_file"]).resolve().parent
    git = ["git", "-C", str(source)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode == 0:
        about["git_commit"] = head.stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True,
                               check=False).stdout
        about["git_dirty_files"] = [line[3:] for line in dirty.splitlines()]
    return about


def run_all(out: Path) -> int:
    if os.path.lexists(out):
        print(f"{out}: exists; give a new folder", file=sys.stderr)
        return 2
    out = out.absolute()
    out.mkdir(parents=True)
    logs = out / "_logs"
    logs.mkdir()
    about = about_adlab(out)
    print(f"adlab {about['adlab_version']} from {about['adlab_file']}"
          + (f" (commit {about['git_commit'][:12]}{', with local changes' if about.get('git_dirty_files') else ''})"
             if "git_commit" in about else ""))
    failed, made, seconds = [], set(), {}
    start = time.perf_counter()
    for name, kind, spec in runs(out):
        log = logs / f"{name}.log"
        missing = [need for need in NEEDS.get(name, []) if need not in made]
        if missing:
            print(f"{name:>15}: skipped (needs {', '.join(missing)})")
            failed.append(name)
            continue
        began = time.perf_counter()
        if kind == "fuse":
            ok = adlab(["fuse", *[out / member for member in spec], "--out", out / name], out, log)
        else:
            if kind == "detect":
                ok = adlab(["data", "synth-scenes", "--out", out / "_scenes", *SCENES], out, log)
            else:
                ok = True
            if ok:
                config = out / "_configs" / f"{name}.yaml"
                config.parent.mkdir(exist_ok=True)
                config.write_text(json.dumps(spec, indent=2) + "\n")  # JSON is YAML
                ok = adlab(["train", config, "--out", out / name, "--quiet"], out, log)
        seconds[name] = round(time.perf_counter() - began, 1)
        ok = ok and (out / name / "metrics.json").is_file()
        if ok:
            made.add(name)
        else:
            failed.append(name)
        print(f"{name:>15}: {'done' if ok else 'FAILED, see ' + str(log)} ({seconds[name]:.0f} s)", flush=True)
    total = round(time.perf_counter() - start, 1)
    about.update(runs=NAMES, failed=failed, run_seconds=seconds, total_seconds=total)
    (out / "_about.json").write_text(json.dumps(about, indent=2) + "\n")
    print(f"{len(made)} of {len(NAMES)} runs in {total:.0f} s into {out}"
          + (f"; failed or skipped: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------- compare

def comparable(value, roots: list[str]):
    """metrics.json without timings ("...seconds" keys) and with absolute paths made relative."""
    if isinstance(value, dict):
        return {comparable(key, roots): comparable(item, roots) for key, item in value.items()
                if not (isinstance(key, str) and key.endswith("seconds"))}
    if isinstance(value, list):
        return [comparable(item, roots) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        for root in roots:
            if value == root or value.startswith(root.rstrip(os.sep) + os.sep):
                return os.path.relpath(value, root)
        return Path(value).name
    return value


def flat(value, prefix: str = "") -> dict:
    """{dotted key: leaf}; list items as key[i]."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items()
                for k, v in flat(item, f"{prefix}.{key}" if prefix else str(key)).items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


MISSING = _Absent()


def read_metrics(folder: Path, name: str) -> dict | None:
    path = folder / name / "metrics.json"
    if not path.is_file():
        return None
    roots = list(dict.fromkeys([str(folder.absolute()), str(folder.resolve())]))
    return flat(comparable(json.loads(path.read_text()), roots))


def compare(a: Path, b: Path) -> int:
    for folder in (a, b):
        if not folder.is_dir():
            print(f"{folder}: not a folder", file=sys.stderr)
            return 2
    extra = sorted({p.parent.name for folder in (a, b) for p in folder.glob("*/metrics.json")} - set(NAMES))
    differs = []
    print(f"comparing {a} with {b} (metrics.json; keys ending in 'seconds' left out, paths relative)")
    for name in NAMES + extra:
        left, right = read_metrics(a, name), read_metrics(b, name)
        if left is None or right is None:
            if left is None and right is None:
                print(f"{name:>15}: missing in both")
            else:
                print(f"{name:>15}: differs (no metrics.json in {a if left is None else b})")
            differs.append(name)
            continue
        keys = [key for key in dict.fromkeys([*left, *right])
                if not same(left.get(key, MISSING), right.get(key, MISSING))]
        if not keys:
            print(f"{name:>15}: identical ({len(left)} values)")
            continue
        differs.append(name)
        print(f"{name:>15}: differs ({len(keys)} of {len(set(left) | set(right))} values)")
        for key in keys:
            print(f"{'':>17}{key}: {left.get(key, MISSING)!r} vs {right.get(key, MISSING)!r}")
    print(f"{len(NAMES) + len(extra) - len(differs)} identical, {len(differs)} differ"
          + (f": {', '.join(differs)}" if differs else ""))
    return 1 if differs else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "run":
        return run_all(Path(argv[1]))
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
