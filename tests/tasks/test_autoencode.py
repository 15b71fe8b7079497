"""Autoencoder runs on digits: each model, each figure, the metrics' protocols, generation, encoder re-use."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import adlab
from adlab.models.checkpoints import read_checkpoint

AE_FIGURES = ["reconstructions.png", "latent_tsne.png", "latent_pca.png", "samples.png", "interpolation.png"]


def ae_config(name: str, **model) -> dict:
    return {
        "task": "autoencode",
        "data": {"name": "digits"},
        "model": {"name": name, "latent_dim": 8, "conv_channels": [16, 32], **model},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.003, "progress_bar": False},
    }


@pytest.fixture(scope="module", params=["ae", "vae", "dae"])
def ae_run(request, tmp_path_factory):
    extra = {"noise": "salt_pepper", "noise_strength": 0.2} if request.param == "dae" else {}
    if request.param == "vae":
        extra = {"beta": 1.0, "kl_warmup_epochs": 1}
    return adlab.train(
        ae_config(request.param, **extra), out=tmp_path_factory.mktemp("ae") / request.param, verbose=False
    )


def test_run_directory_and_metrics(ae_run):
    name = ae_run.config.model.name
    for file in [
        "config.yaml",
        "env.json",
        "history.csv",
        "metrics.json",
        "latents.npz",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "figures/loss_curves.png",
    ]:
        assert (ae_run.path / file).is_file(), file
    for figure in AE_FIGURES:
        assert (ae_run.path / "figures" / figure).is_file(), figure
    m = json.loads((ae_run.path / "metrics.json").read_text())
    assert 0 < m["test_mse"] < 0.2 and 0 < m["test_bce"] < 1.0
    assert 0.1 < m["latent_knn_accuracy"] <= 1 and 0.1 < m["latent_linear_accuracy"] <= 1
    assert ("test_kl" in m and "test_elbo" in m) == (name == "vae")
    assert ("test_mse_corrupted" in m) == (name == "dae")
    if name == "vae":
        assert m["test_kl"] > 0 and m["test_elbo"] < 0
    if name == "dae":
        assert m["test_mse_corrupted"] >= m["test_mse"] * 0.9


def test_latent_knn_accuracy_agrees_with_scikit_learn(ae_run):
    from sklearn.neighbors import KNeighborsClassifier

    latents = np.load(ae_run.path / "latents.npz")
    assert latents["train_z"].shape[1] == 8 and len(latents["test_z"]) == len(latents["test_y"]) == 360
    knn = KNeighborsClassifier(5).fit(latents["train_z"], latents["train_y"])
    expected = knn.score(latents["test_z"], latents["test_y"])
    assert ae_run.metrics["latent_knn_accuracy"] == pytest.approx(expected, abs=1e-9)


def test_per_image_results_add_up_to_the_metrics(ae_run):
    """predictions.csv: each test image's class, the linear probe's answer and its reconstruction
    error; the report's paired tests between variants read them."""
    import csv

    with open(ae_run.path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    latents = np.load(ae_run.path / "latents.npz")
    assert len(rows) == 360 and [int(r["y_true"]) for r in rows] == latents["test_y"].tolist()
    right = np.mean([r["y_true"] == r["y_pred"] for r in rows])
    assert right == pytest.approx(ae_run.metrics["latent_linear_accuracy"], abs=1e-9)
    assert np.mean([float(r["mse"]) for r in rows]) == pytest.approx(ae_run.metrics["test_mse"], rel=1e-4)


def test_test_mse_agrees_with_a_direct_computation(ae_run):
    """metrics.json's test_mse is the mean squared error per pixel of the saved model on the run's
    own test images (clean inputs), recomputed here in one batch."""
    from sklearn.datasets import load_digits

    from adlab.data.datamodule import ImageDataModule
    from adlab.tasks.autoencode.generate import load_autoencoder

    model, info, config = load_autoencoder(ae_run.path)
    assert info.class_names == [str(i) for i in range(10)]
    data = ImageDataModule(
        config.data, config.train.batch_size, channels=info.channels, normalization=(info.mean, info.std)
    )
    data.prepare()
    model.eval()
    with torch.inference_mode():
        x = data.transform(data.test_x)
        recon = model(x)["recon"]
    assert len(x) == 360 and recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    direct = float(((recon.double() - x.double()) ** 2).mean())
    assert ae_run.metrics["test_mse"] == pytest.approx(direct, rel=1e-5)
    assert json.loads((ae_run.path / "metrics.json").read_text())["test_mse"] == pytest.approx(direct, rel=1e-5)
    # and the inputs are digits' own pixels in [0, 1]: each test image is one of load_digits' images / 16
    digits = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0).flatten(1)
    distances = torch.cdist(x.flatten(1).float(), digits)
    assert float(distances.min(dim=1).values.max()) < 1e-5


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_classifier_commands_on_an_autoencoder_run_say_what_applies(ae_run, cli, command):
    extra = ["x.png"] if command == "predict" else []
    line = cli.refused(command, str(ae_run.path), *extra)
    assert "is an autoencoder run: its test scores are in its metrics.json" in line
    assert f"adlab generate {ae_run.path} draws new images" in line


def test_generate_writes_a_grid(ae_run, tmp_path):
    out = tmp_path / "samples.png"
    assert adlab.generate(ae_run.path, n=16, out=out, verbose=False) == out
    with Image.open(out) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_generate_never_replaces_a_file_it_did_not_make(ae_run, cli):
    if ae_run.config.model.name != "ae":
        pytest.skip("one model is enough for the file rule")
    Image.new("L", (4, 4)).save(cli.root / "mine.png")
    (cli.root / "notes.txt").write_text("mine")
    cli.refused("generate", ae_run.path, "--out", "mine.png", names=("mine.png", "--overwrite"))
    cli.refused(
        "generate", ae_run.path, "--out", "mine.png", "--overwrite", names=("mine.png", "not an image adlab made")
    )
    cli.refused("generate", ae_run.path, "--out", "notes.txt", names=("notes.txt", ".png"))
    cli.refused("generate", ae_run.path, "--n", "0", names=("--n",))
    cli.refused("generate", ae_run.path, "--seed", "-1", names=("--seed",))
    cli.succeeds("generate", ae_run.path, "--out", "ours.png", outputs=("ours.png",))
    cli.refused("generate", ae_run.path, "--out", "ours.png", names=("ours.png", "--overwrite"))
    cli.succeeds("generate", ae_run.path, "--out", "ours.png", "--overwrite", "--seed", "1", outputs=("ours.png",))


def test_two_dimensional_latent_draws_the_manifold(tmp_path):
    run = adlab.train(ae_config("vae", latent_dim=2), out=tmp_path / "vae2", verbose=False)
    assert (run.path / "figures" / "manifold.png").is_file()


def test_the_manifold_map_puts_each_decoded_image_at_its_codes(tmp_path, monkeypatch):
    """One picture of tiles, row r and column c holding the image decoded at (z1[c], z2[r]), code values on the
    axes (an image per subplot left wide gaps and named no axis)."""
    from adlab.tasks.autoencode import figures

    rows, cols = 3, 4
    images = torch.arange(rows * cols, dtype=torch.float32).div(rows * cols).view(-1, 1, 1, 1).expand(-1, 1, 5, 6)
    shown = {}
    monkeypatch.setattr(figures.plt.Axes, "imshow", lambda ax, data, **kw: shown.setdefault("data", data))
    figures.manifold_map(
        images.contiguous(), torch.linspace(-1, 1, cols), torch.linspace(1, -1, rows), tmp_path / "m.png", "t"
    )
    tiles = shown["data"]
    assert tiles.shape == (rows * 5, cols * 6)
    for r in range(rows):
        for c in range(cols):
            assert np.all(tiles[r * 5 : (r + 1) * 5, c * 6 : (c + 1) * 6] == images[r * cols + c, 0, 0, 0].item())


@pytest.fixture(scope="module")
def ae_for_transfer(tmp_path_factory):
    return adlab.train(ae_config("ae"), out=tmp_path_factory.mktemp("ae_t") / "ae", verbose=False)


def _classify_on_encoder(weights, freeze, out):
    arch = {} if weights else {"latent_dim": 8, "conv_channels": [16, 32]}  # with weights: the AE's own
    config = {
        "data": {"name": "digits"},
        "model": {"name": "encoder", "weights": weights, "freeze": freeze, **arch},
        "train": {"epochs": 6, "batch_size": 64, "lr": 0.01, "progress_bar": False},
    }
    return adlab.train(config, out=out, verbose=False)


@pytest.mark.parametrize("regime", ["scratch", "finetune", "frozen"])
def test_encoder_reuse_in_three_regimes(ae_for_transfer, regime, tmp_path):
    weights = None if regime == "scratch" else str(ae_for_transfer.path)
    run = _classify_on_encoder(weights, regime == "frozen", tmp_path / regime)
    assert run.metrics["accuracy"] > 0.5
    before, _ = read_checkpoint(ae_for_transfer.path)
    after, _ = read_checkpoint(run.path / "checkpoints" / "last.ckpt")
    encoder_convs = [k for k, v in before.items() if k.startswith("encoder.features") and v.dim() == 4]
    assert encoder_convs
    same = [torch.equal(after[k], before[k]) for k in encoder_convs]
    if regime == "frozen":
        assert all(same)
        assert run.metrics["trainable_parameters"] < run.metrics["parameters"]
    else:
        assert not any(same)


def test_classify_with_an_autoencoder_name_is_a_config_error():
    from adlab.errors import ConfigError

    with pytest.raises(ConfigError, match="autoencode"):
        adlab.load_config({"task": "classify", "model": {"name": "vae"}})
    with pytest.raises(ConfigError, match="ae, vae or dae"):
        adlab.load_config({"task": "autoencode", "model": {"name": "resnet18"}})


def test_encoder_classifier_reloads_from_its_own_config(ae_for_transfer, tmp_path):
    """The saved config carries the autoencoder's architecture, so evaluate needs nothing else."""
    run = _classify_on_encoder(str(ae_for_transfer.path), False, tmp_path / "ft")
    assert run.config.model.autoencoder.latent_dim == 8 and run.config.model.autoencoder.conv_channels == [16, 32]
    again = adlab.evaluate(run.path, out=tmp_path / "eval", verbose=False)
    assert again["accuracy"] == pytest.approx(run.metrics["accuracy"], abs=1e-9)


def test_encoder_needs_an_autoencoder_checkpoint(tmp_path):
    from tests.conftest import fast_config

    from adlab.errors import ConfigError

    classifier = adlab.train(fast_config(), out=tmp_path / "cnn", verbose=False)
    with pytest.raises(ConfigError, match="not an autoencoder run"):
        _classify_on_encoder(str(classifier.path), False, tmp_path / "x")
