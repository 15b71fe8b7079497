"""`adlab demo`: the seeds' curriculum, end to end, on offline data, ending in one report.

The demo is a study file (quick.yaml, full.yaml next to this module) run by the study runner:
1. a VGG-style CNN and a learning-rate study (with and without StepLR in the full demo),
2. transfer regimes (scratch / fine-tune / frozen) on split classes, and a late fusion,
3. AE vs VAE vs DAE with latent probes, maps and samples,
4. YOLO detection from scratch vs from a pretrained checkpoint on synthetic KITTI-like scenes
   (made by the study's data preparation steps).

Fashion-MNIST when it is on the machine, scikit-learn's digits otherwise. `quick` is sized to
finish in about three minutes on a 2-core CPU; the full demo in about twenty.
"""

from __future__ import annotations

import time
from pathlib import Path

from adlab import io

HERE = Path(__file__).parent
MARKER = "demo.json"  # what the demo ran on (its ownership marker is ownership.MARKER)


def study_file(quick: bool) -> Path:
    return HERE / ("quick.yaml" if quick else "full.yaml")


def fashion_mnist_available() -> bool:
    from adlab.data.idx import find_idx
    from adlab.data.sources import DEBIAN_FASHION_MNIST, default_root

    return any(
        find_idx(folder, "train-images-idx3-ubyte")
        for folder in (DEBIAN_FASHION_MNIST, default_root() / "FashionMNIST" / "raw")
    )


def load_demo(quick: bool, source: str, overrides: list[str] | None = None):
    """The demo study, its Fashion-MNIST runs moved to `source` (digits where Fashion-MNIST is missing)."""
    from adlab.config import load_config
    from adlab.study.spec import load_study

    study = load_study(study_file(quick), overrides=overrides)
    for run in study.runs:
        assert run.config is not None  # load_study validates every run's config
        if run.config.data.name == "fashion_mnist" and source != "fashion_mnist":
            raw = run.config.to_dict()
            raw["data"]["name"] = source
            run.config = load_config(raw)
    return study


def run_demo(
    out: str | Path = "runs/demo", quick: bool = False, verbose: bool = True, overrides: list[str] | None = None
) -> Path:
    from adlab.study.runner import run_study

    say = io.printer(verbose)
    out = Path(out)
    source = "fashion_mnist" if fashion_mnist_available() else "digits"
    study = load_demo(quick, source, overrides)
    data_name = (
        "Fashion-MNIST (Debian package dataset-fashion-mnist)"
        if source == "fashion_mnist"
        else "scikit-learn digits (Fashion-MNIST not found)"
    )
    say(f"demo data: {data_name}; {'quick' if quick else 'full'} demo: {len(study.runs)} runs, study file {study.path}")
    started = time.perf_counter()
    run_study(study.path, out=out, verbose=verbose, overrides=overrides, study=study, kind="demo")
    io.write_json(out / MARKER, {"source": source, "quick": quick})
    report = out / "report.md"
    say(f"demo done in {time.perf_counter() - started:.0f} s: {report} and {report.with_suffix('.html')}")
    return report
