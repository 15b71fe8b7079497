"""Study files beyond the grid: data preparation steps, report sections, `--set` on every run,
paths relative to the file, inputs checked before anything is written."""

import json
import math

import pytest

from adlab.errors import AdlabError, ConfigError
from adlab.study.spec import load_study, section_runs
from checks import snapshot

TINY = "config: {data: {name: digits}, train: {epochs: 1, batch_size: 256, progress_bar: false}}\n"


def write(folder, text, name="study.yaml"):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_set_applies_to_every_run_after_its_own_settings(tmp_path):
    study = load_study(
        write(tmp_path, TINY + "variants: {a: {train.epochs: 5}, b: {train.lr: 0.01}}\n"),
        overrides=["train.epochs=2", "train.seed=7"],
    )
    assert [(r.name, r.config.train.epochs, r.config.train.seed) for r in study.runs] == [("a", 2, 7), ("b", 2, 7)]
    assert study.runs[1].config.train.lr == 0.01
    with pytest.raises(ConfigError, match="run 'a'.*train.epochs"):
        load_study(write(tmp_path, "variants: {a: {}}\n"), overrides=["train.epochs=0"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_study(write(tmp_path, "variants: {a: {}}\n"), overrides=["train.epochs"])


def test_paths_are_relative_to_the_file_that_holds_them(tmp_path, monkeypatch):
    (tmp_path / "studies" / "imgs").mkdir(parents=True)
    (tmp_path / "configs" / "data").mkdir(parents=True)
    write(tmp_path / "configs", "data: {name: folder, root: data}\n", "base.yaml")
    study_path = write(
        tmp_path / "studies",
        "base: ../configs/base.yaml\n"
        "variants: {mine: {data.root: imgs}, theirs: {}, weights: {model.weights: w.pth}}\n",
    )
    monkeypatch.chdir(tmp_path)
    study = load_study(study_path, check_configs=True, overrides=["train.epochs=1"])
    roots = {r.name: r.config.data.root for r in study.runs}
    assert roots["mine"] == str(tmp_path / "studies" / "imgs")
    assert roots["theirs"] == str(tmp_path / "configs" / "data")
    assert study.runs[2].config.model.weights == "w.pth"  # a bare name with no such file: the loader's (ultralytics)
    cli_set = load_study(study_path, overrides=["data.root=here"]).runs[0].config.data.root
    assert cli_set == str(tmp_path / "here")  # --set: the working directory


def test_a_missing_input_is_refused_naming_the_run_before_the_study_folder_exists(tmp_path):
    from adlab.study.runner import run_study

    study_path = write(tmp_path, "config: {data: {name: folder, root: nowhere}}\nvariants: {first: {}}\n")
    out = tmp_path / "out"
    with pytest.raises(AdlabError, match=r"run 'first': data.root: .*nowhere not found"):
        run_study(study_path, out=out, verbose=False)
    assert not out.exists()


def test_sections_name_runs_and_fusions(tmp_path):
    study = load_study(
        write(
            tmp_path,
            "config: {data: {name: digits}}\n"
            "grid: {train.lr: [0.1, 0.01]}\nseeds: [0, 1]\n"
            "fusion: [{name: both, runs: [lr=0.1, lr=0.01]}]\n"
            "sections: {Fast: [lr=0.1, both], Slow: [lr=0.01]}\n",
        )
    )
    assert section_runs(study) == [
        ("Fast", ["lr=0.1-seed=0", "lr=0.1-seed=1", "both-seed=0", "both-seed=1"]),
        ("Slow", ["lr=0.01-seed=0", "lr=0.01-seed=1"]),
    ]
    with pytest.raises(ConfigError, match=r"sections.Fast: unknown run 'lr=1'"):
        load_study(write(tmp_path, "grid: {train.lr: [0.1]}\nsections: {Fast: [lr=1]}\n"))


def test_prepare_steps_are_checked_as_one_line(tmp_path):
    for text, message in [
        ("prepare: {filter: {}}\n", "prepare: .*valid list"),
        ("prepare: [{copy: {out: x}}]\n", r"prepare\[0\]: unknown tool 'copy'"),
        ("prepare: [{synth-scenes: {out: x, images: 0}}]\n", r"synth-scenes.images: .*greater"),
        ("prepare: [{filter: {data: d, out: o, keep: [a], extra: 1}}]\n", "unknown key 'extra'"),
        ("prepare: [{filter: {data: d, out: o}, crops: {}}]\n", "need one tool"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_study(write(tmp_path, text))


def test_prepare_runs_once_and_keeps_only_its_own_output(tmp_path):
    from adlab.study.prepare import STEP_FILE, run_steps

    text = (
        "config: {task: detect, model: {name: yolov8n}, data: {name: yolo, root: '{out}/scenes/data.yaml'}}\n"
        "variants: {}\n"
        "prepare:\n  - synth-scenes: {out: '{out}/scenes', images: 6, size: [96, 64], seed: 3, source: digits}\n"
    )
    study = load_study(write(tmp_path, text))
    assert [tool for tool, _ in study.prepare] == ["synth-scenes"]

    lines = []
    run_steps(study.prepare, study.path, tmp_path / "s", lines.append)
    data = tmp_path / "s" / "scenes"
    assert (data / "data.yaml").is_file() and json.loads((data / STEP_FILE).read_text())["images"] == 6
    before = snapshot(data)
    run_steps(study.prepare, study.path, tmp_path / "s", lines.append)  # the same step: kept as it is
    assert snapshot(data) == before and "kept" in lines[-1]
    other = load_study(write(tmp_path, text.replace("images: 6", "images: 7"), "other.yaml"))
    with pytest.raises(AdlabError, match="made by another step"):
        run_steps(other.prepare, other.path, tmp_path / "s", lines.append)
    assert snapshot(data) == before


def test_resume_needs_the_same_set_items(tmp_path):
    from adlab.study.runner import run_study

    study_path = write(tmp_path, TINY + "variants: {a: {}}\n")
    out = run_study(study_path, out=tmp_path / "out", verbose=False, overrides=["train.batch_size=512"])
    assert json.loads((out / "study.json").read_text())["set"] == ["train.batch_size=512"]
    before = snapshot(out)
    with pytest.raises(AdlabError, match="started with --set train.batch_size=512"):
        run_study(study_path, out=out, resume=True, verbose=False)
    assert snapshot(out) == before
    run_study(study_path, out=out, resume=True, verbose=False, overrides=["train.batch_size=512"])  # kept


def _result(name, group, seed, **metrics):
    from pathlib import Path

    from adlab.study.report import RunResult

    return RunResult(name, group, seed, "classify", Path(name), metrics)


def test_reference_figures_are_set_beside_adlabs_with_the_seed_spread():
    from adlab.study.report import Table, reference_blocks
    from adlab.study.spec import Reference

    reference = Reference(
        source="Coimbra A",
        runs={
            "lr": {"mean_class_accuracy": 79.95, "per_class_accuracy.cat": 60.0},
            "alone": {"accuracy": 50.0},
            "never": {"accuracy": 1.0},
        },
    )
    results = [
        _result(f"lr-seed={s}", "lr", s, mean_class_accuracy=v, per_class_accuracy={"cat": c})
        for s, v, c in [(0, 0.80, 0.70), (1, 0.81, 0.71), (2, 0.79, 0.69)]
    ]
    results.append(_result("alone", "alone", None, accuracy=0.6))
    results += [_result(f"same-seed={s}", "same", s, accuracy=1.0) for s in (0, 1)]
    reference.runs["same"] = {"accuracy": 99.0}
    blocks = reference_blocks(reference, results)
    rows = {(r[0], r[1]): r for r in next(b for b in blocks if isinstance(b, Table)).rows}
    assert rows[("lr", "mean_class_accuracy")][2:] == [
        "79.95",
        "80.00 (n=3)",
        "+0.05",
        "[75.03, 84.97]",
        "inside",
    ]  # t(0.975, 2) · 1.0 · √(4/3) = 4.97
    assert rows[("lr", "per_class_accuracy.cat")][-1] == "outside"  # 70 ± 4.97 does not reach 60
    assert rows[("alone", "accuracy")][-1] == "one seed: unknown" and rows[("never", "accuracy")][3] == "not measured"
    assert rows[("same", "accuracy")][-1] == "no spread across seeds"  # not "outside" a range of zero width
    assert "add the line seeds: [0, 1, 2] to the study file" in blocks[1].text and "`" not in blocks[1].text
    fraction = Reference(source="F", scale="fraction", runs={"alone": {"accuracy": 0.021}})
    row = next(b for b in reference_blocks(fraction, results) if isinstance(b, Table)).rows[0]
    assert row[2:5] == ["0.0210", "0.6000", "+0.5790"]  # fractions keep four decimals


def test_per_class_table_has_a_column_per_class_and_marks_the_best():
    from adlab.study.report import per_class_blocks

    blocks = per_class_blocks(
        "per_class_accuracy",
        {
            "a": [_result("a", "a", None, per_class_accuracy={"Car": 0.96, "Cyclist": 0.32})],
            "b": [
                _result("b-seed=0", "b", 0, per_class_accuracy={"Car": 0.99, "Cyclist": None}),
                _result("b-seed=1", "b", 1, per_class_accuracy={"Car": 0.97, "Cyclist": None}),
            ],
        },
    )
    heading, table = blocks
    assert heading.text == "Per class accuracy (mean over seeds)"
    assert table.header == ["variant", "Car", "Cyclist"]
    assert table.rows == [["a", 0.96, 0.32], ["b", pytest.approx(0.98), None]]
    assert table.bold == [[False, False, False], [False, True, False]]  # one Cyclist value: nothing to beat


def test_reference_runs_must_be_runs_of_the_study(tmp_path):
    with pytest.raises(ConfigError, match=r"reference.runs: unknown run 'lr=0.5'"):
        load_study(write(tmp_path, "grid: {train.lr: [0.1]}\nreference: {source: x, runs: {lr=0.5: {accuracy: 90}}}\n"))
    with pytest.raises(ConfigError, match=r"reference.scale"):
        load_study(
            write(
                tmp_path,
                "grid: {train.lr: [0.1]}\nreference: {source: x, scale: percents, runs: {lr=0.1: {accuracy: 90}}}\n",
            )
        )


def test_plan_says_what_a_study_would_do_and_writes_nothing(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "datasets"))
    (tmp_path / "w.pth").write_bytes(b"0" * 2048)
    study_path = write(
        tmp_path,
        "config: {data: {name: digits}, train: {epochs: 2, batch_size: 64}}\n"
        "variants:\n"
        "  small: {}\n"
        "  cifar: {data.name: cifar10, model.name: resnet18, model.weights: imagenet}\n"
        "  mine: {model.weights: w.pth}\n"
        "  later: {model.weights: '{out}/runs/small'}\n"
        "prepare: [{synth-scenes: {out: '{out}/scenes', images: 4}}]\n",
    )
    before = snapshot(tmp_path)
    printed = cli.succeeds("study", study_path, "--plan", "--out", tmp_path / "out")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()
    assert "study study: 4 runs; study folder" in printed and "(new)" in printed
    assert f"prepare: synth-scenes -> {tmp_path / 'out' / 'scenes'} (to make)" in printed
    assert "digits: bundled with scikit-learn" in printed
    assert f"cifar10: will download cifar-10-python.tar.gz (170.5 MB) to {tmp_path / 'datasets'}" in printed
    assert "imagenet for resnet18: will download https://download.pytorch.org/models/resnet18-f37072fd.pth" in printed
    assert f"{tmp_path / 'w.pth'}: present (0.0 MB)" in printed and "{out}/runs/small: made by this study" in printed
    assert "[1/4] small: classify cnn (scratch), 2 epochs, batch 64, about 1,293 training images, about " in printed
    assert "nothing was written or downloaded" in printed


def test_plan_names_the_library_file_each_regime_reads(tmp_path, monkeypatch, cli):
    """A segmenter's imagenet is its backbone's file (not the whole net's); coco_voc the whole net's; timm's
    weights come from the Hugging Face cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    study_path = write(
        tmp_path,
        "config: {task: segment, data: {name: masks, root: '{out}/s'}}\n"
        "variants:\n"
        "  backbone: {model.name: lraspp_mobilenet_v3_large, model.weights: imagenet}\n"
        "  whole: {model.name: lraspp_mobilenet_v3_large, model.weights: coco_voc}\n",
    )
    printed = cli.succeeds("study", study_path, "--plan", "--out", tmp_path / "out")
    assert (
        "imagenet for lraspp_mobilenet_v3_large: will download "
        "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth"
    ) in printed
    assert (
        "coco_voc for lraspp_mobilenet_v3_large: will download "
        "https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth"
    ) in printed
    pytest.importorskip("timm")
    timm_study = write(tmp_path, "config: {model: {name: timm/resnet18, weights: imagenet}}\nvariants: {a: {}}\n")
    printed = cli.succeeds("study", timm_study, "--plan", "--out", tmp_path / "out2")
    assert (
        "imagenet for timm/resnet18: will download from https://huggingface.co/timm/resnet18.a1_in1k "
        f"to {tmp_path / 'hf'}" in printed
    )


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", "torch.bfloat16"), ("32-true", None)])
def test_plan_times_the_step_in_the_runs_precision(monkeypatch, precision, dtype):
    """bf16 with channels-last trains twice as fast as fp32 on a CPU: an fp32 step doubled the estimate."""
    import torch

    from adlab.config import load_config
    from adlab.study import plan

    seen, real = [], torch.autocast

    def recording_autocast(device, dtype=None, enabled=True):
        seen.append(str(dtype) if enabled else None)
        return real(device, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    config = load_config(
        {
            "model": {"name": "cnn", "cnn": {"conv_channels": [8]}},
            "train": {"precision": precision, "channels_last": True},
        }
    )
    step, per_image, checkpoints = plan._time_step(config, (1, 8, 8), 4)
    assert step > 0 and per_image > 0 and checkpoints > 0
    assert seen and set(seen) == {dtype}


def test_plan_estimates_from_a_timed_step_times_steps_and_epochs(monkeypatch):
    from adlab.config import load_config
    from adlab.study import plan
    from adlab.tasks import output_costs

    monkeypatch.setattr(plan, "_time_step", lambda config, shape, batch: (0.5, 0.001, 0.0))
    monkeypatch.setattr(plan, "_time_loading", lambda data: 0.0)
    monkeypatch.setattr(output_costs, "figure_seconds", lambda: 0.25)
    config = load_config(
        {"data": {"name": "cifar10", "val_fraction": 0.1, "classes": [0, 1]}, "train": {"epochs": 3, "batch_size": 100}}
    )
    counts = plan.split_images(config)
    assert counts == {"train": 9000, "val": 1000, "test": 2000}  # 50,000 x 0.9, two classes of ten; their test
    # 3 epochs of 90 steps and a validation pass, then the test images once, then three figures
    figures = 3 * 0.25  # loss curves, confusion matrix, misclassified images
    assert plan.estimate_seconds(config, counts, {}) == pytest.approx(
        3 * (0.5 * 90 + 1000 * 0.001) + 2000 * 0.001 + figures
    )
    tta = config.model_copy(update={"train": config.train.model_copy(update={"tta_flip": True})})
    assert plan.estimate_seconds(tta, counts, {}) == pytest.approx(
        3 * (0.5 * 90 + 1000 * 0.001) + 4000 * 0.001 + figures
    )
    capped = load_config({"data": {"name": "digits", "train_per_class": 20}})
    assert plan.train_images(capped) == 200


def test_plan_counts_an_autoencoders_test_passes_and_its_training_codes(monkeypatch):
    """An autoencoder run reconstructs and encodes its test images and encodes its training images for the
    latent probes: those passes are part of its time."""
    from adlab.config import load_config
    from adlab.study import plan
    from adlab.tasks import output_costs

    monkeypatch.setattr(plan, "_time_step", lambda config, shape, batch: (0.0, 0.001, 0.0))
    monkeypatch.setattr(plan, "_time_loading", lambda data: 0.0)
    monkeypatch.setattr(output_costs, "figure_seconds", lambda: 0.0)
    monkeypatch.setattr(output_costs, "tsne_seconds", lambda points, dim: 0.0)
    monkeypatch.setattr(output_costs, "probe_seconds", lambda train, test, dim: 0.0)
    config = load_config(
        {
            "task": "autoencode",
            "data": {"name": "fashion_mnist", "val_fraction": 0.2},
            "model": {"name": "ae"},
            "train": {"epochs": 2},
        }
    )
    counts = plan.split_images(config)
    assert counts == {"train": 48000, "val": 12000, "test": 10000}
    assert plan.estimate_seconds(config, counts, {}) == pytest.approx(2 * 12000 * 0.001 + (2 * 10000 + 48000) * 0.001)


@pytest.mark.parametrize("latent, figures, tsne", [(10, 6, (3000, 10)), (2, 7, (3000, 2))])
def test_plan_counts_an_autoencoders_figures_t_sne_map_and_probes(monkeypatch, latent, figures, tsne):
    """A short autoencoder run spends more on its t-SNE map, probes and figures than on training (a 2-epoch
    run on 10,000 images: about 7 s of 14): the plan counts them at the run's sizes."""
    from adlab.config import load_config
    from adlab.study import plan
    from adlab.tasks import output_costs

    asked = {}
    monkeypatch.setattr(plan, "_time_step", lambda config, shape, batch: (0.0, 0.0, 0.0))
    monkeypatch.setattr(plan, "_time_loading", lambda data: 0.0)
    monkeypatch.setattr(output_costs, "figure_seconds", lambda: 0.25)
    monkeypatch.setattr(
        output_costs, "tsne_seconds", lambda points, dim: asked.setdefault("tsne", (points, dim)) and 3.0
    )
    monkeypatch.setattr(
        output_costs, "probe_seconds", lambda train, test, dim: asked.setdefault("probes", (train, test, dim)) and 0.5
    )
    config = load_config(
        {
            "task": "autoencode",
            "data": {"name": "fashion_mnist", "val_fraction": 0.2},
            "model": {"name": "vae", "autoencoder": {"latent_dim": latent}},
            "train": {"epochs": 2},
        }
    )
    counts = plan.split_images(config)
    assert plan.estimate_seconds(config, counts, {}) == pytest.approx(figures * 0.25 + 3.0 + 0.5)
    assert asked == {"tsne": tsne, "probes": (48000, 10000, latent)}  # 3,000 test codes drawn (tsne_points)


def test_output_costs_are_timed_here_and_scaled_to_the_runs_sizes():
    from adlab.tasks import output_costs

    assert output_costs.figure_seconds() > 0
    assert output_costs.tsne_seconds(3000, 2) == 0.0  # a 2-D code is its own map
    small, large = output_costs.tsne_seconds(500, 10), output_costs.tsne_seconds(5000, 10)
    assert small > 0 and large / small == pytest.approx(5000 * math.log(5000) / (500 * math.log(500)))
    assert output_costs.probe_seconds(48000, 10000, 10) == pytest.approx(
        output_costs.probe_seconds(4800, 1000, 10) * 10
    )


def test_plan_counts_each_epochs_checkpoints_at_the_networks_size(monkeypatch):
    """A run writes best.ckpt and last.ckpt each epoch, with the optimizer's state: AlexNet's are about 700 MB
    each, and B's AlexNet runs took twice their estimate before the plan counted them."""
    import torchvision

    from adlab.config import load_config
    from adlab.study import plan
    from adlab.tasks import get_task, output_costs
    from adlab.tasks.lightning import checkpoint_bytes

    alexnet = torchvision.models.alexnet(num_classes=10)
    weights = sum(p.numel() for p in alexnet.parameters())
    assert checkpoint_bytes(alexnet, "adam") == 3 * 4 * weights  # fp32 weights and Adam's two moments
    assert checkpoint_bytes(alexnet, "sgd") == 2 * 4 * weights
    for p in alexnet.features.parameters():
        p.requires_grad_(False)  # a frozen layer is saved but has no optimizer state
    frozen = sum(p.numel() for p in alexnet.features.parameters())
    assert checkpoint_bytes(alexnet, "adam") == 3 * 4 * weights - 2 * 4 * frozen

    written = []
    monkeypatch.setattr(output_costs, "checkpoint_seconds", lambda nbytes: written.append(nbytes) or 0.5)
    config = load_config({"model": {"name": "cnn", "cnn": {"conv_channels": [8]}}, "train": {"epochs": 3}})
    net = get_task("classify").timing_network(config, (1, 8, 8))
    assert get_task("classify").checkpoint_seconds(config, net) == 2 * 0.5  # best and last, once each epoch
    assert written == [checkpoint_bytes(net, "adam")]

    monkeypatch.setattr(plan, "_time_step", lambda config, shape, batch: (0.0, 0.0, 1.0))
    monkeypatch.setattr(plan, "_time_loading", lambda data: 0.0)
    monkeypatch.setattr(output_costs, "figure_seconds", lambda: 0.0)
    counts = {"train": 100, "val": 10, "test": 10}
    assert plan.estimate_seconds(config, counts, {}) == pytest.approx(3 * 1.0)


def test_plan_times_an_autoencoders_step_with_the_tasks_own_loss():
    """A VAE's step sums a binary cross-entropy over every pixel in fp32 and adds its KL term: the full study
    F's 2-D VAE took 1.51x its estimate while the plan timed the network alone."""
    import torch

    from adlab.config import load_config
    from adlab.tasks import get_task
    from adlab.tasks.autoencode.module import TrainingLoss

    config = load_config(
        {
            "task": "autoencode",
            "data": {"name": "fashion_mnist"},
            "model": {"name": "vae", "autoencoder": {"latent_dim": 2, "reconstruction_loss": "bce"}},
        }
    )
    net = get_task("autoencode").timing_network(config, (1, 28, 28))
    assert isinstance(net, TrainingLoss)
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    loss = net.train()(x)
    torch.manual_seed(0)
    parts = net.module.losses(x, noisy=False)
    assert loss.ndim == 0 and torch.allclose(loss, parts["loss"]) and parts["kl"] > 0  # reconstruction and KL
    assert "mse" not in net.module.losses(x, noisy=False, mse=False)  # a training step skips the reported MSE
    assert net.eval()(x)["recon"].shape == x.shape  # evaluation: the network's passes


def test_a_checkpoints_write_time_is_timed_here_and_scaled_to_its_size(monkeypatch):
    from adlab.tasks import output_costs

    monkeypatch.setattr(output_costs, "CHECKPOINT_PROBE_MAX", 4 * 2**20)  # 256 MB in a real plan
    small = output_costs.checkpoint_seconds(2**20)
    assert small > 0
    big = output_costs.CHECKPOINT_PROBE_MAX
    assert output_costs.checkpoint_seconds(4 * big) == pytest.approx(4 * output_costs.checkpoint_seconds(big))
    assert output_costs.checkpoint_seconds(0) == 0.0


def test_a_full_temporary_folder_leaves_the_checkpoints_out_of_the_plan_without_stopping_it(monkeypatch):
    import errno

    import torch

    from adlab.tasks import output_costs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    output_costs._write_seconds_timed.cache_clear()
    try:
        assert output_costs.checkpoint_seconds(3 * 2**20) == 0.0
    finally:
        output_costs._write_seconds_timed.cache_clear()  # no 0.0 left cached for the other tests


def test_plan_counts_the_images_of_a_folder_that_is_here(tmp_path):
    from PIL import Image

    from adlab.config import load_config
    from adlab.study import plan

    for name, n in (("cat", 30), ("dog", 10)):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / "pets" / name / f"{i}.png")
    config = load_config(
        {
            "data": {
                "name": "folder",
                "root": str(tmp_path / "pets"),
                "image_size": 8,
                "test_fraction": 0.25,
                "val_fraction": 0.1,
            }
        }
    )
    assert plan.split_images(config) == {"train": 27, "val": 3, "test": 10}
    assert plan.input_shape(config) == (3, 8, 8)
    missing = load_config({"data": {"name": "folder", "root": "{out}/data/crops", "image_size": 8}})
    assert plan.split_images(missing) is None  # made by the study's prepare step: not here yet


@pytest.mark.parametrize("held_out", ["test", "val"])
def test_plan_counts_a_folder_split_on_disk_as_the_run_loads_it(tmp_path, held_out):
    """train/ beside test/ or val/ (`adlab data crops` writes val/): the held-out tree is the test set, and its
    name is not a class (a train/ + val/ folder was once planned as two classes of all its images)."""
    from PIL import Image

    from adlab.config import load_config
    from adlab.study import plan

    for split, n in (("train", 12), (held_out, 4)):
        for name in ("car", "van"):
            (tmp_path / "crops" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8)).save(tmp_path / "crops" / split / name / f"{i}.png")
    config = load_config(
        {
            "data": {
                "name": "folder",
                "root": str(tmp_path / "crops"),
                "image_size": 8,
                "val_fraction": 0.25,
                "classes": ["car"],
            }
        }
    )
    assert plan.split_images(config) == {"train": 9, "val": 3, "test": 4}


def test_plan_counts_reading_the_data_timed_on_a_sample_of_a_folders_files(tmp_path, monkeypatch):
    """Every run reads its data into memory again: EuroSAT's 27,000 JPEGs, CIFAR-10's pickles. The plan times
    it, on at most SAMPLED_FILES of a folder's files scaled to all of them."""
    from PIL import Image

    from adlab.config import load_config
    from adlab.study import plan

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(100):
            Image.new("RGB", (16, 16), (i, 0, 0)).save(tmp_path / "pets" / name / f"{i}.png")
    from adlab.data import folder

    decoded = []

    original = folder.decode_images
    monkeypatch.setattr(
        folder, "decode_images", lambda paths, *a, **k: decoded.append(len(paths)) or original(paths, *a, **k)
    )
    config = load_config({"data": {"name": "folder", "root": str(tmp_path / "pets"), "image_size": 16}})
    cache: dict = {}
    seconds = plan.data_seconds(config, cache)
    # 64 of the 200 files decoded (once to warm up, then the faster of two passes), scaled by 200 / 64
    assert seconds > 0 and decoded == [plan.SAMPLED_FILES] * 3
    assert plan.data_seconds(config, cache) == seconds and len(decoded) == 3  # timed once
    assert plan.data_seconds(load_config({"data": {"name": "digits"}}), cache) > 0  # scikit-learn's, read
    missing = load_config({"data": {"name": "cifar10", "download": False}})
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "nothing"))
    assert plan.data_seconds(missing, {}) == 0.0  # not here: the run downloads it
    made = load_config({"data": {"name": "folder", "root": "{out}/data/crops", "image_size": 8}})
    assert plan.data_seconds(made, {}) == 0.0  # made by the study's prepare step


def test_plan_times_a_frozen_network_as_frozen():
    """A frozen backbone has no backward pass and no optimizer step: its step is cheaper, and the plan says so."""
    from adlab.config import load_config
    from adlab.study import plan

    common = {"data": {"name": "cifar10"}, "train": {"batch_size": 32}}
    trained = load_config({**common, "model": {"name": "resnet18"}})
    frozen = load_config({**common, "model": {"name": "resnet18", "freeze": True}})
    steps = {}
    for name, config in (("trained", trained), ("frozen", frozen)):
        steps[name] = min(plan._time_step(config, (3, 32, 32), 32)[0] for _ in range(2))
    assert steps["frozen"] < 0.8 * steps["trained"]


def test_old_flat_model_keys_in_a_study_config_replace_the_base_configs(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {name: cnn, cnn: {hidden: [32], dropout: 0.1}}\n")
    study = load_study(
        write(
            tmp_path,
            "base: base.yaml\nconfig: {model: {hidden: [64]}}\nvariants: {a: {}, b: {model.cnn.dropout: 0.2}}\n",
        )
    )
    assert [(r.config.model.cnn.hidden, r.config.model.cnn.dropout) for r in study.runs] == [([64], 0.1), ([64], 0.2)]


def test_an_old_flat_model_key_in_a_base_follows_each_runs_own_model(tmp_path):
    """model.conv_channels (the spelling before model families) in an autoencoder base: a cnn variant
    reads it as model.cnn.conv_channels, the autoencoder runs as model.autoencoder.conv_channels
    (e3ec244 moved it once, to the base's family, and the cnn variant silently built its defaults)."""
    (tmp_path / "base.yaml").write_text(
        "data: {name: digits}\nmodel: {name: ae, conv_channels: [4, 8]}\ntask: autoencode\n"
    )
    study = load_study(
        write(tmp_path, "base: base.yaml\nvariants:\n  ae: {}\n  cnn: {task: classify, model.name: cnn}\n")
    )
    configs = {run.name: run.config for run in study.runs}
    assert configs["ae"].model.autoencoder.conv_channels == [4, 8]
    assert configs["cnn"].model.cnn.conv_channels == [4, 8]


def test_the_plan_flushes_subnormal_floats_before_it_times_a_step():
    """Threads torch starts before the flush keep the slow path for subnormals: a study whose plan timed a step
    before its first run trained assignment A's lr=0.01 run at 10, 27, then 56 s an epoch (10 s flushed)."""
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from adlab.config import load_config\n"
        "from adlab.study import plan\n"
        "assert (torch.tensor([1e-39]) * 1.0).item() != 0  # a subnormal survives before\n"
        "plan._time_step(load_config({'model': {'name': 'cnn', 'cnn': {'conv_channels': [8]}}}), (1, 8, 8), 4)\n"
        "assert (torch.tensor([1e-39]) * 1.0).item() == 0  # flushed to zero after\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
