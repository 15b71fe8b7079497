"""The six assignment studies of studies/ (docs/assignments.md), each run end to end by the study runner
on stand-ins of its real data in their on-disk formats (tests/standins), in a smoke size: every planned
run finishes, the prepare steps and the fusion are made, the weights each run loaded are recorded, and
the report sets the published figures beside adlab's.

Smoke size: `--set train.epochs=1` and smaller images where the network allows it; each study file is
copied as it ships. Where a file has `seeds: [0, 1, 2]` the copy has `seeds: [0, 1]` (only that line
changed, checked below): two seeds still give the report's seed-to-seed range, a third would add a
third of the time. Everything else, prepare steps, variants, regimes, fusion, sections and reference,
is the shipped file's."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from adlab.rundir import flat_metrics
from adlab.study.spec import load_study
from checks import snapshot

STUDIES = Path(__file__).resolve().parents[2] / "studies"
NAMES = [
    "a_cifar10_lr",
    "b_eurosat_transfer",
    "c_kitti_crops",
    "d_kitti_yolo",
    "e_mnist_autoencoders",
    "f_fmnist_autoencoder_search",
]
SHIPPED_SEEDS = "seeds: [0, 1, 2]\n"
TWO_SEEDS = "seeds: [0, 1]\n"


# --- helpers ----------------------------------------------------------------------------------------


def study_copy(name: str, folder: Path, overrides: list[str]) -> Path:
    """studies/<name>.yaml copied into `folder` (its relative paths then point into `folder`), with two
    seeds instead of three; the copy's runs are the shipped file's runs of those seeds, setting for setting."""
    text = (STUDIES / f"{name}.yaml").read_text(encoding="utf-8")
    if SHIPPED_SEEDS in text:
        assert text.count(SHIPPED_SEEDS) == 1
        text = text.replace(SHIPPED_SEEDS, TWO_SEEDS)
    path = folder / f"{name}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    shipped = {r.name: r.config.to_dict() for r in load_study(STUDIES / f"{name}.yaml", overrides=overrides).runs}
    copied = {r.name: r.config.to_dict() for r in load_study(path, overrides=overrides).runs}
    assert copied and copied == {k: v for k, v in shipped.items() if not k.endswith("-seed=2")}
    return path


def planned_runs(path: Path, overrides: list[str]) -> list[str]:
    return [r.name for r in load_study(path, overrides=overrides).runs]


def assert_every_run_finished(out: Path, names: list[str]) -> dict[str, dict]:
    """Each run's folder holds the run-directory contract; returns each run's metrics.json."""
    metrics = {}
    for name in names:
        run = out / "runs" / name
        for file in ("config.yaml", "env.json", "history.csv", "metrics.json"):
            assert (run / file).is_file(), f"{name}: no {file}"
        metrics[name] = json.loads((run / "metrics.json").read_text())
    return metrics


def reference_rows(report: str) -> dict[tuple[str, str], list[str]]:
    """The table under '## Against the published figures' as {(run, metric): the other cells}."""
    assert "## Against the published figures" in report
    section = report.split("## Against the published figures", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| run |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def assert_reference_section(out: Path, study_path: Path, seeds: list[int] | None) -> None:
    """One row per published figure of the study's reference block: the figure, adlab's mean over the
    seeds' metrics.json (percent unless the block says fraction), their difference and the seed range."""
    report = (out / "report.md").read_text(encoding="utf-8")
    assert (out / "report.html").is_file()
    reference = yaml.safe_load(study_path.read_text(encoding="utf-8"))["reference"]
    scale = 1.0 if reference.get("scale") == "fraction" else 100.0
    rows = reference_rows(report)
    expected = {(run, key): value for run, figures in reference["runs"].items() for key, value in figures.items()}
    assert set(rows) == set(expected)
    for (run, key), published in expected.items():
        published_cell, adlab, difference, spread, verdict = rows[(run, key)]
        folders = [f"{run}-seed={s}" for s in seeds] if seeds else [run]
        values = [flat_metrics(json.loads((out / "runs" / f / "metrics.json").read_text()))[key] for f in folders]
        mean = sum(values) / len(values) * scale
        digits = 4 if scale == 1.0 else 2  # fractions (an MSE of 0.021) keep four decimals
        assert published_cell == f"{published:.{digits}f}"
        assert adlab == f"{mean:.{digits}f}" + (f" (n={len(seeds)})" if seeds else ""), (run, key)
        assert float(difference) == pytest.approx(mean - published, abs=0.6 * 10**-digits)
        if seeds:
            low, high = (float(v) for v in re.fullmatch(r"\[(-?[\d.]+), (-?[\d.]+)\]", spread).groups())
            assert low <= round(mean, digits) <= high
            if len(set(values)) == 1:  # the seeds agree exactly (one epoch on a stand-in can): no range to judge by
                assert verdict == "no spread across seeds"
            else:
                assert verdict == ("inside" if low <= published <= high else "outside")
        else:
            assert spread == "" and verdict == "one seed: unknown"


def read_predictions(path: Path) -> list[dict]:
    """predictions.csv rows as {y_true, y_pred, p: [p_0 .. p_k-1]}."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = sorted((k for k in rows[0] if re.fullmatch(r"p_\d+", k)), key=lambda k: int(k[2:]))
    return [{"y_true": int(r["y_true"]), "y_pred": int(r["y_pred"]), "p": [float(r[k]) for k in columns]} for r in rows]


def imagenet_weights(monkeypatch, tmp_path: Path, *names: str) -> dict[str, Path]:
    """torch.hub's cache under tmp_path holding ImageNet weights files for `names` (TORCH_HOME set)."""
    from standins.hub import write_imagenet_weights

    torch_home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return {name: write_imagenet_weights(torch_home, name) for name in names}


def assert_weights_recorded(run: Path, file: Path | None) -> None:
    weights = json.loads((run / "env.json").read_text())["weights"]
    if file is None:
        assert weights is None, run.name
        return
    assert weights["source"] == "imagenet" and weights["file"] == str(file), run.name
    assert weights["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert weights["matches_torchvision"] is False and weights["downloaded"] is False  # the stand-in, not fetched


def run(path: Path, out: Path, overrides: list[str]) -> Path:
    from adlab.study.runner import run_study

    return run_study(path, out=out, overrides=overrides, verbose=False)


# --- the shipped files, as they are --------------------------------------------------------------


def test_the_six_shipped_studies_validate_and_plan_without_writing(cli, tmp_path, monkeypatch):
    """Every run of every shipped file validates, and `adlab study FILE --plan` names its runs, its
    prepare steps and its downloads, and leaves studies/, the working folder and the data folders as
    they were (no study folder made)."""
    from adlab.study import plan

    monkeypatch.setattr(
        plan, "_time_step", lambda config, shape, batch: (0.01, 0.0001, 0.0)
    )  # no network is built and timed
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert sorted(p.stem for p in STUDIES.glob("*.yaml")) == NAMES
    expected_runs = {
        "a_cifar10_lr": 15,
        "b_eurosat_transfer": 12,
        "c_kitti_crops": 18,
        "d_kitti_yolo": 2,
        "e_mnist_autoencoders": 9,
        "f_fmnist_autoencoder_search": 11,
    }
    studies_before = snapshot(STUDIES)
    for name in NAMES:
        study = load_study(STUDIES / f"{name}.yaml")
        assert study.name == name and len(study.runs) == expected_runs[name]
        assert study.spec.reference is not None
        out = tmp_path / "out" / name
        printed = cli.succeeds("study", STUDIES / f"{name}.yaml", "--plan", "--out", out)
        assert printed.startswith(f"study {name}: {expected_runs[name]} runs")
        assert "nothing was written or downloaded" in printed
        assert all(f"] {r.name}: " in printed for r in study.runs)
        assert not out.exists()
        if name in ("c_kitti_crops", "d_kitti_yolo"):
            assert f"prepare: kitti-to-yolo -> {out / 'data' / 'kitti'} (to make)" in printed
    assert snapshot(STUDIES) == studies_before
    assert not (tmp_path / "datasets").exists() and not (tmp_path / "torch").exists()


def test_every_shipped_study_has_a_quick_version_that_is_a_part_of_it():
    """--quick: fewer epochs than the full runs, at most one seed, runs of the study, and a note the report shows."""
    for name in NAMES:
        full = load_study(STUDIES / f"{name}.yaml")
        quick = load_study(STUDIES / f"{name}.yaml", overrides=["study.quick=true"])
        assert quick.quick and quick.spec.quick.note, name
        assert 0 < len(quick.runs) <= len(full.runs) and len({r.seed for r in quick.runs}) == 1, name
        assert {r.group for r in quick.runs} <= {r.group for r in full.runs}, name
        epochs = {r.group: r.config.train.epochs for r in full.runs}
        assert all(r.config.train.epochs < epochs[r.group] for r in quick.runs), name
        assert quick.settings_said().startswith("This study was run as its quick version (--quick: "), name


@pytest.mark.parametrize("name", ["e_mnist_autoencoders", "f_fmnist_autoencoder_search"])
def test_the_plan_of_an_autoencoder_study_times_its_networks(name, tmp_path, monkeypatch):
    """--plan's time estimate builds and times each network for real (the test above replaces that)."""
    from adlab.study.plan import plan_lines

    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "datasets"))
    study = load_study(STUDIES / f"{name}.yaml", overrides=["train.batch_size=8"])  # a quick timed step
    runs = [line for line in plan_lines(study, tmp_path / "out") if line.startswith("  [")]
    assert len(runs) == len(study.runs)
    assert all(re.search(r", about (\d+h\d\dm|\d+m\d\ds)$", line) for line in runs), runs


# --- each study end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_cifar10_learning_rates(tmp_path, monkeypatch):
    from standins.cifar import write_cifar10

    write_cifar10(tmp_path / "data")
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "data"))
    overrides = ["train.epochs=1", "data.verify=false"]  # the stand-in's bytes are not the originals'
    path = study_copy("a_cifar10_lr", tmp_path / "study", overrides)
    out = run(path, tmp_path / "out", overrides)

    names = planned_runs(path, overrides)
    assert len(names) == 10
    assert_every_run_finished(out, names)
    assert_reference_section(out, path, seeds=[0, 1])
    configs = {n: yaml.safe_load((out / "runs" / n / "config.yaml").read_text())["train"] for n in names}
    assert configs["lr=0.01-constant-seed=1"]["lr"] == 0.01 and configs["lr=0.01-constant-seed=1"]["scheduler"] is None
    assert configs["lr=0.001-steplr-seed=0"]["scheduler"]["name"] == "step"
    assert {c["epochs"] for c in configs.values()} == {1} and {c["test_checkpoint"] for c in configs.values()} == {
        "last"
    }
    env = json.loads((out / "runs" / names[0] / "env.json").read_text())
    assert str(tmp_path / "data" / "cifar-10-batches-py") in env["data"] and "checksums not verified" in env["data"]


@pytest.mark.slow
def test_b_eurosat_transfer_and_late_fusion(tmp_path, monkeypatch):
    from standins.eurosat import write_eurosat

    write_eurosat(tmp_path / "data", per_class=10)
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "data"))
    weights = imagenet_weights(monkeypatch, tmp_path, "alexnet", "mobilenet_v2")
    overrides = ["train.epochs=1"]  # EuroSAT stays 64x64: AlexNet's features need about 63 pixels
    path = study_copy("b_eurosat_transfer", tmp_path / "study", overrides)
    out = run(path, tmp_path / "out", overrides)

    names = planned_runs(path, overrides)
    assert len(names) == 8
    assert_every_run_finished(out, names)
    assert_reference_section(out, path, seeds=[0, 1])
    for name in names:
        net = "alexnet" if name.startswith("alexnet") else "mobilenet_v2"
        assert_weights_recorded(out / "runs" / name, weights[net] if "-imagenet-" in name else None)
    for seed in (0, 1):  # each seed's fusion: the mean of the two pretrained nets' test probabilities
        fused = read_predictions(out / "runs" / f"fusion-imagenet-seed={seed}" / "predictions.csv")
        members = [
            read_predictions(out / "runs" / f"{net}-imagenet-seed={seed}" / "predictions.csv")
            for net in ("mobilenet_v2", "alexnet")
        ]
        assert len(fused) == len(members[0]) == len(members[1]) > 0
        for row, first, second in zip(fused, *members, strict=True):
            assert row["y_true"] == first["y_true"] == second["y_true"]
            mean = [(a + b) / 2 for a, b in zip(first["p"], second["p"], strict=True)]
            assert row["p"] == pytest.approx(mean, abs=1e-5)
            assert mean[row["y_pred"]] >= max(mean) - 1e-5  # its argmax (up to the file's 6 digits)
        metrics = json.loads((out / "runs" / f"fusion-imagenet-seed={seed}" / "metrics.json").read_text())
        assert metrics["accuracy"] == pytest.approx(sum(r["y_pred"] == r["y_true"] for r in fused) / len(fused))
    shutil.rmtree(out / "runs")  # AlexNet's checkpoints: 233 MB a run, not worth keeping in pytest's tmp


@pytest.mark.slow
def test_c_kitti_crops_in_three_regimes(tmp_path, monkeypatch):
    from standins.kitti import write_kitti

    folder = tmp_path / "study"
    write_kitti(folder / "kitti", images=20)  # the study's prepare reads kitti/ next to the study file
    weights = imagenet_weights(monkeypatch, tmp_path, "resnet18", "mobilenet_v2")
    # both nets pool adaptively: 32 pixels work; one batch per epoch
    overrides = ["train.epochs=1", "data.image_size=32", "train.batch_size=64"]
    path = study_copy("c_kitti_crops", folder, overrides)
    out = run(path, tmp_path / "out", overrides)

    from adlab.study.prepare import STEP_FILE

    assert (out / "data" / "kitti" / "data.yaml").is_file()
    for prepared in ("kitti", "crops"):  # each step's output records the step that made it
        assert json.loads((out / "data" / prepared / STEP_FILE).read_text())
    for split in ("train", "val"):
        assert sorted(p.name for p in (out / "data" / "crops" / split).iterdir()) == ["Car", "Cyclist", "Person"]
    names = planned_runs(path, overrides)
    assert len(names) == 12
    assert_every_run_finished(out, names)
    assert_reference_section(out, path, seeds=[0, 1])
    report = (out / "report.md").read_text()
    per_class = report.split("### Per class accuracy", 1)[1]
    assert (
        per_class.split("\n\n", 2)[1].splitlines()[0] == "| variant | Car | Cyclist | Person |"
    )  # mean over seeds per variant
    for name in names:
        net = "resnet18" if "resnet18" in name else "mobilenet_v2"
        assert_weights_recorded(out / "runs" / name, None if name.startswith("1-scratch") else weights[net])
        assert yaml.safe_load((out / "runs" / name / "config.yaml").read_text())["model"]["freeze"] == name.startswith(
            "2-frozen"
        )


@pytest.mark.slow
@pytest.mark.requires("detect")
def test_d_kitti_yolo_scratch_and_coco_pretrained(tmp_path, monkeypatch):
    from standins.kitti import write_kitti
    from standins.ultralytics_weights import offline_weights_folder, write_ultralytics_checkpoint

    folder = tmp_path / "study"
    write_kitti(folder / "kitti", images=16)
    attempts = offline_weights_folder(monkeypatch, tmp_path / "ultralytics-weights")
    checkpoint, sha256 = write_ultralytics_checkpoint(tmp_path / "ultralytics-weights", "yolov5su.pt")
    overrides = ["train.epochs=1", "data.image_size=64", "train.batch_size=8"]
    path = study_copy("d_kitti_yolo", folder, overrides)
    out = run(path, tmp_path / "out", overrides)

    cars = yaml.safe_load((out / "data" / "cars" / "data.yaml").read_text())
    assert list(cars["names"].values() if isinstance(cars["names"], dict) else cars["names"]) == ["Car"]
    assert (out / "data" / "kitti" / "data.yaml").is_file()
    labels = [
        line.split()[0] for f in (out / "data" / "cars").rglob("labels/*/*.txt") for line in f.read_text().splitlines()
    ]
    assert labels and set(labels) == {"0"}
    metrics = assert_every_run_finished(out, ["scratch", "coco-pretrained"])
    assert {"map50", "map50_95", "precision", "recall"} <= set(metrics["coco-pretrained"])
    assert_reference_section(out, path, seeds=None)
    recorded = json.loads((out / "runs" / "coco-pretrained" / "env.json").read_text())["weights"]
    assert recorded["source"] == "ultralytics" and recorded["name"] == "yolov5su.pt"
    assert recorded["file"] == str(checkpoint) and recorded["sha256"] == sha256 and recorded["downloaded"] is False
    assert json.loads((out / "runs" / "scratch" / "env.json").read_text())["weights"] is None
    assert not [url for url, _ in attempts if "yolov5su" in url]  # the checkpoint was found: not fetched


@pytest.mark.slow
def test_e_mnist_autoencoders(tmp_path, monkeypatch):
    from standins.mnist import write_mnist

    write_mnist(tmp_path / "data", kind="MNIST")
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "data"))
    overrides = ["train.epochs=1"]
    path = study_copy("e_mnist_autoencoders", tmp_path / "study", overrides)
    out = run(path, tmp_path / "out", overrides)

    names = planned_runs(path, overrides)
    assert len(names) == 6
    metrics = assert_every_run_finished(out, names)
    assert all(0.0 <= m["latent_linear_accuracy"] <= 1.0 for m in metrics.values())
    assert_reference_section(out, path, seeds=[0, 1])
    env = json.loads((out / "runs" / names[0] / "env.json").read_text())
    assert str(tmp_path / "data") in env["data"]


@pytest.mark.slow
def test_f_fmnist_width_grid_encoder_finetune_and_2d_vae(tmp_path):
    from standins.mnist import write_mnist

    write_mnist(tmp_path / "data", kind="FashionMNIST")
    # data.root: the stand-in before Debian's /usr/share/datasets/fashion-mnist, where that is installed
    overrides = ["train.epochs=1", f"data.root={tmp_path / 'data'}"]
    path = study_copy("f_fmnist_autoencoder_search", tmp_path / "study", overrides)
    out = run(path, tmp_path / "out", overrides)

    names = planned_runs(path, overrides)
    assert len(names) == 11
    metrics = assert_every_run_finished(out, names)
    assert_reference_section(out, path, seeds=None)
    assert 0.0 <= metrics["encoder-finetune"]["accuracy"] <= 1.0 and metrics["conv_channels=16,32,32"]["test_mse"] > 0
    finetune = json.loads((out / "runs" / "encoder-finetune" / "env.json").read_text())
    assert str(out / "runs" / "conv_channels=16,32,32") in json.dumps(
        finetune["weights"]
    )  # the grid's 16-32-32 encoder
    report = (out / "report.md").read_text()
    for title in (
        "Grid over the encoder's widths",
        "The encoder fine-tuned, and homework 1's CNN",
        "A 2-D VAE for generation",
    ):
        assert f"## {title}" in report
    assert str(tmp_path / "data") in json.loads((out / "runs" / names[0] / "env.json").read_text())["data"]
