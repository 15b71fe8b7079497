"""The demo is a study file (src/adlab/demo/quick.yaml, full.yaml) run by the study runner."""

import json

import pytest

from adlab.study.spec import section_runs


@pytest.mark.parametrize("quick", [True, False])
@pytest.mark.parametrize("source", ["fashion_mnist", "digits"])
def test_the_demo_is_a_valid_study_on_either_data_set(quick, source):
    from adlab.demo import load_demo

    study = load_demo(quick, source)
    tasks = [r.config.task for r in study.runs]
    assert tasks.count("detect") == 3 and tasks.count("autoencode") == 3 and "classify" in tasks
    assert {r.config.data.name for r in study.runs} == {source, "yolo"}
    assert [tool for tool, _ in study.prepare] == ["synth-scenes", "synth-scenes"]
    sections = section_runs(study)
    assert len(sections) == 4 and sorted(n for _, names in sections for n in names) == sorted(
        [r.name for r in study.runs] + ["fusion-finetune+frozen"]
    )
    finetune = next(r for r in study.runs if r.name == "cnn-finetune")
    assert finetune.config.model.weights == "{out}/runs/pretrain-cnn"
    assert study.runs.index(finetune) > [r.name for r in study.runs].index("pretrain-cnn")


@pytest.mark.parametrize("source", ["fashion_mnist", "digits"])
def test_the_quick_demo_compares_like_with_like(source):
    """What each lesson of the quick demo rests on, checked without training: the transfer runs start
    from the pretrain runs' weights, and each comparison changes only what it is about."""
    from adlab.classes import resolve_classes
    from adlab.data.sources import FASHION_MNIST_CLASSES, MNIST_CLASSES
    from adlab.demo import load_demo

    study = load_demo(True, source)
    runs = {r.name: r.config for r in study.runs}
    order = [r.name for r in study.runs]

    def without(config, *keys):  # the config as a dict, less the dotted keys a comparison is about
        raw = config.to_dict()
        for key in keys:
            section, name = key.split(".")
            raw[section].pop(name)
        raw.pop("name", None)
        return raw

    # 1. the learning-rate study: three rates, nothing else different
    rates = [n for n in order if n.startswith("lr=")]
    assert sorted(runs[n].train.lr for n in rates) == [0.0001, 0.001, 0.01]
    assert len({json.dumps(without(runs[n], "train.lr"), sort_keys=True) for n in rates}) == 1

    # 2. transfer: pretrained on classes 0-4; the three regimes on the same few shots of 5-9, same budget
    assert runs["pretrain-cnn"].data.classes == [0, 1, 2, 3, 4]
    regimes = ["cnn-scratch", "cnn-finetune", "cnn-frozen"]
    assert runs["cnn-scratch"].data.classes == [5, 6, 7, 8, 9] and runs["cnn-scratch"].data.train_per_class <= 50
    assert runs["cnn-scratch"].model.weights is None
    assert runs["cnn-finetune"].model.weights == runs["cnn-frozen"].model.weights == "{out}/runs/pretrain-cnn"
    assert [runs[n].model.freeze for n in regimes] == [False, False, True]
    assert len({json.dumps(without(runs[n], "model.weights", "model.freeze"), sort_keys=True) for n in regimes}) == 1
    assert all(order.index("pretrain-cnn") < order.index(n) for n in regimes)

    # 3. AE, VAE and DAE: the same data, code size and budget
    assert len({json.dumps(without(runs[n], "model.name"), sort_keys=True) for n in ("ae", "vae", "dae")}) == 1

    # 4. detection: yolo-transfer starts from yolo-pretrain's weights, yolo-scratch from nothing, on the
    # same target scenes for the same epochs; the pretrain scenes are another set
    pretrain, scratch, transfer = runs["yolo-pretrain"], runs["yolo-scratch"], runs["yolo-transfer"]
    assert transfer.model.weights == "{out}/runs/yolo-pretrain"
    assert pretrain.model.weights is None and scratch.model.weights is None
    assert order.index("yolo-pretrain") < order.index("yolo-transfer")
    assert transfer.data == scratch.data and transfer.train.epochs == scratch.train.epochs
    assert pretrain.data.root != scratch.data.root
    # the scenes are made at the size the detector sees them (a wide scene shrunk to imgsz leaves objects of a
    # few pixels, and nothing was learned), by different seeds, of one class present in either object source
    steps = {f"{step.out}/data.yaml": step for _, step in study.prepare}
    assert set(steps) == {pretrain.data.root, scratch.data.root}
    for config in (pretrain, scratch):
        assert max(steps[config.data.root].size) == config.data.image_size
    assert steps[pretrain.data.root].seed != steps[scratch.data.root].seed
    assert steps[pretrain.data.root].images > steps[scratch.data.root].images
    for _, step in study.prepare:
        assert len(resolve_classes(step.classes, FASHION_MNIST_CLASSES, "classes")) == 1
        assert len(resolve_classes(step.classes, MNIST_CLASSES, "classes")) == 1


@pytest.mark.slow
def test_the_quick_demo_teaches_each_lesson(tmp_path, require):
    """`adlab demo --quick` end to end (about 2.5 minutes on 2 cores): each section's lesson is in its numbers.
    On Fashion-MNIST (the numbers the demo was tuned on); elsewhere it only has to finish."""
    import csv

    from scipy.stats import binomtest

    from adlab.demo import fashion_mnist_available, run_demo

    out = tmp_path / "demo"
    report = run_demo(out, quick=True, verbose=False)
    assert report.is_file() and report.with_suffix(".html").is_file()
    metrics = {path.parent.name: json.loads(path.read_text()) for path in (out / "runs").glob("*/metrics.json")}
    assert len(metrics) == 13 + 1  # 13 runs and the fusion
    for name in ("ae", "vae", "dae"):
        figures = {p.name for p in (out / "runs" / name / "figures").glob("*.png")}
        assert {"reconstructions.png", "latent_tsne.png", "latent_pca.png", "samples.png"} <= figures
    if not fashion_mnist_available():  # the lessons' numbers are Fashion-MNIST's; the digits fallback only has to run
        require("fashion-mnist")  # skipped, or with CI=true failed

    def correct(run: str) -> list[bool]:
        with open(out / "runs" / run / "predictions.csv", newline="") as f:
            return [row["y_true"] == row["y_pred"] for row in csv.DictReader(f)]

    def significantly_better(a: str, b: str) -> bool:  # McNemar's exact test on the same test images
        pairs = list(zip(correct(a), correct(b), strict=True))
        only_a, only_b = sum(x and not y for x, y in pairs), sum(y and not x for x, y in pairs)
        return only_a > only_b and binomtest(only_a, only_a + only_b).pvalue < 0.05

    # 1. one learning rate is best, significantly better than each other one
    rates = ["lr=0.01", "lr=0.001", "lr=0.0001"]
    best = max(rates, key=lambda n: metrics[n]["accuracy"])
    assert all(significantly_better(best, other) for other in rates if other != best)
    # 2. pretrained features beat scratch on the few-shot task
    assert any(significantly_better(regime, "cnn-scratch") for regime in ("cnn-finetune", "cnn-frozen"))
    # 4. the pretrained detector: mAP50 >= 0.3 on the target scenes, clearly above scratch
    assert metrics["yolo-transfer"]["map50"] >= 0.3
    assert metrics["yolo-transfer"]["map50"] > metrics["yolo-scratch"]["map50"] + 0.2
