import pytest

from adlab.config import Config, load_config, parse_override
from adlab.errors import ConfigError


def test_empty_source_gives_documented_defaults():
    config = load_config()
    assert config.task == "classify"
    assert config.data.name == "digits"
    assert config.data.val_fraction == 0.1
    assert config.model.name == "cnn" and config.model.weights is None and config.model.freeze is False
    assert config.train.optimizer == "adam" and config.train.lr == 0.001 and config.train.epochs == 10


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  epochs: 3\ndata:\n  name: fashion_mnist\n")
    config = load_config(path, ["train.lr=0.5", "model.cnn.hidden=[32, 16]", "data.classes=[Bag, 3]"])
    assert config.train.lr == 0.5
    assert config.train.epochs == 3
    assert config.model.cnn.hidden == [32, 16]
    assert config.data.classes == ["Bag", 3]


def test_scheduler_and_augment_shorthands():
    config = load_config({"train": {"scheduler": "step"}, "data": {"augment": True}})
    assert config.train.scheduler.name == "step" and config.train.scheduler.step_size == 5
    assert config.data.augment.enabled is True
    # a shorthand can be refined by a dotted override
    config = load_config({"train": {"scheduler": "step"}}, ["train.scheduler.gamma=0.5"])
    assert config.train.scheduler.name == "step" and config.train.scheduler.gamma == 0.5
    config = load_config({}, ["data.augment.flip=true"])
    assert config.data.augment.enabled is True and config.data.augment.flip is True


def test_unknown_key_names_key_and_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config({}, ["train.lrr=0.1"])
    message = str(err.value)
    assert "train.lrr" in message and "lr" in message and "epochs" in message
    assert "\n" not in message


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*train"):
        load_config({"trian": {}})


def test_wrong_literal_lists_choices():
    with pytest.raises(ConfigError) as err:
        load_config({}, ["train.optimizer=rmsprop"])
    assert "train.optimizer" in str(err.value)
    assert "'adam'" in str(err.value) and "'sgd'" in str(err.value) and "rmsprop" in str(err.value)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config({}, ["train.epochs=abc"])
    with pytest.raises(ConfigError, match=r"train\.scheduler\.name"):
        load_config({"train": {"scheduler": "linear"}})


def test_out_of_range_values():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_config({"data": {"val_fraction": 1.5}})
    with pytest.raises(ConfigError, match="train.lr"):
        load_config({"train": {"lr": 0}})


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_override_parsing():
    assert parse_override("train.lr=1e-3") == ("train.lr", 1e-3)
    assert parse_override("model.weights=null") == ("model.weights", None)
    assert parse_override("data.root=/some/path") == ("data.root", "/some/path")
    with pytest.raises(ConfigError):
        parse_override("train.lr")


def test_round_trip_through_dict():
    config = load_config({"train": {"scheduler": {"name": "onecycle", "pct_start": 0.3}}})
    again = Config.model_validate(config.to_dict())
    assert again == config


# --- model families (model.cnn, model.autoencoder) and the keys that moved there -------------------

OLD_VAE = {"task": "autoencode", "model": {"name": "vae", "latent_dim": 16, "beta": 0.5, "conv_channels": [8, 16]}}
NEW_VAE = {
    "task": "autoencode",
    "model": {"name": "vae", "autoencoder": {"latent_dim": 16, "beta": 0.5, "conv_channels": [8, 16]}},
}


@pytest.fixture
def fresh_notices(monkeypatch):
    """Notices are printed once per process: each test starts with none printed yet."""
    from adlab import io

    monkeypatch.setattr(io, "_NOTICED", set())


def test_model_family_keys_live_in_their_sections():
    config = load_config({"model": {"cnn": {"hidden": [32], "dropout": 0.1}}})
    assert config.model.cnn.hidden == [32] and config.model.cnn.dropout == 0.1
    assert config.model.autoencoder.hidden is None  # another family's key of the same name is its own
    assert set(config.to_dict()["model"]) == {
        "name",
        "weights",
        "freeze",
        "load_head",
        "whiten",
        "cnn",
        "autoencoder",
        "unet",
    }


def test_old_flat_keys_give_the_same_config_with_one_notice_each(capsys, fresh_notices):
    old = load_config(OLD_VAE)
    lines = capsys.readouterr().err.splitlines()
    assert old.to_dict() == load_config(NEW_VAE).to_dict()
    assert old.model.autoencoder.latent_dim == 16 and old.model.autoencoder.beta == 0.5
    assert sorted(lines) == sorted(
        [
            "notice: model.latent_dim is now model.autoencoder.latent_dim (the old key still works)",
            "notice: model.beta is now model.autoencoder.beta (the old key still works)",
            "notice: model.conv_channels is now model.autoencoder.conv_channels (the old key still works)",
        ]
    )
    load_config(OLD_VAE)  # once per process
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "name, family",
    [("cnn", "cnn"), ("resnet18", "cnn"), ("encoder", "autoencoder"), ("ae", "autoencoder"), ("dae", "autoencoder")],
)
def test_an_old_key_both_families_have_goes_to_the_family_of_model_name(name, family, fresh_notices):
    task = "autoencode" if name in ("ae", "dae") else "classify"
    config = load_config({"task": task, "model": {"name": name, "hidden": [7], "conv_dropout": 0.25}})
    assert getattr(config.model, family).hidden == [7] and getattr(config.model, family).conv_dropout == 0.25
    other = getattr(config.model, "cnn" if family == "autoencoder" else "autoencoder")
    assert other.hidden is None and other.conv_dropout == 0.0


def test_an_old_key_of_the_other_family_still_works(fresh_notices):
    """Before the families a cnn config could carry autoencoder keys (ignored): it still validates."""
    config = load_config({"model": {"name": "cnn", "latent_dim": 4, "pool_early": True}})
    assert config.model.autoencoder.latent_dim == 4 and config.model.cnn.pool_early is True


def test_old_and_new_key_both_given_is_an_error_naming_both(fresh_notices):
    with pytest.raises(ConfigError) as err:
        load_config({"task": "autoencode", "model": {"name": "ae", "latent_dim": 8, "autoencoder": {"latent_dim": 4}}})
    message = str(err.value)
    assert "model.latent_dim" in message and "model.autoencoder.latent_dim" in message and "both" in message
    assert "\n" not in message


def test_set_an_old_key_over_a_file_in_the_new_layout(capsys, fresh_notices):
    config = load_config("configs/autoencoders/vae.yaml", ["model.latent_dim=16"])
    assert config.model.autoencoder.latent_dim == 16
    assert config.model.autoencoder.kl_warmup_epochs == 3  # the file's other family keys are kept
    assert capsys.readouterr().err.splitlines() == [
        "notice: model.latent_dim is now model.autoencoder.latent_dim (the old key still works)"
    ]


def test_set_a_new_key_over_an_old_key(fresh_notices):
    config = load_config(
        {"task": "autoencode", "model": {"name": "ae", "latent_dim": 8, "beta": 2.0}},
        ["model.autoencoder.latent_dim=16"],
    )
    assert config.model.autoencoder.latent_dim == 16 and config.model.autoencoder.beta == 2.0


def test_an_override_with_an_old_key_replaces_the_new_key_of_a_full_config(fresh_notices):
    """A study run's dotted old key over its base config (a full config, every family key present)."""
    from adlab.config import set_dotted

    raw = load_config("configs/digits_cnn.yaml").to_dict()
    for key, value in (("model.hidden", [256]), ("model.name", "encoder"), ("model.dropout", 0.2)):
        set_dotted(raw, key, value)
    config = load_config(raw)
    assert config.model.autoencoder.hidden == [256] and config.model.autoencoder.dropout == 0.2
    assert config.model.cnn.conv_channels == [32, 64]


def test_cli_set_with_an_old_key(capsys, fresh_notices):
    import yaml

    from adlab.cli import main

    assert main(["config", "configs/autoencoders/ae.yaml", "--set", "model.latent_dim=16"]) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out)["model"]["autoencoder"]["latent_dim"] == 16
    assert captured.err.splitlines() == [
        "notice: model.latent_dim is now model.autoencoder.latent_dim (the old key still works)"
    ]


def test_configs_adlab_wrote_are_migrated_without_notices(capsys, fresh_notices):
    from adlab.config import validate_config

    assert validate_config(OLD_VAE, notices=False).to_dict() == load_config(NEW_VAE).to_dict()
    assert load_config(OLD_VAE, notices=False).model.autoencoder.latent_dim == 16
    assert capsys.readouterr().err == ""


def test_nested_keys_in_errors():
    with pytest.raises(ConfigError) as err:
        load_config({}, ["model.cnn.foo=1"])
    assert "unknown key 'model.cnn.foo'" in str(err.value)
    assert "conv_channels" in str(err.value) and "pool_early" in str(err.value)
    assert "latent_dim" not in str(err.value)  # the valid keys of model.cnn, not of another section
    with pytest.raises(ConfigError, match=r"^config: model\.cnn\.dropout: .*less than 1"):
        load_config({}, ["model.cnn.dropout=2"])
    with pytest.raises(ConfigError, match=r"model\.autoencoder\.noise: .*'gaussian'"):
        load_config({"task": "autoencode", "model": {"name": "dae", "autoencoder": {"noise": "pink"}}})


def test_an_old_key_with_a_bad_value_names_its_new_key(fresh_notices):
    with pytest.raises(ConfigError, match=r"model\.cnn\.dropout: "):
        load_config({}, ["model.dropout=2"])
    with pytest.raises(ConfigError, match=r"unknown key 'model\.foo' .*cnn, autoencoder"):
        load_config({}, ["model.foo=1"])


def test_paths_in_a_config_file_are_relative_to_the_file(tmp_path, monkeypatch, capsys):
    from adlab.config import load_config

    (tmp_path / "configs" / "imgs").mkdir(parents=True)
    (tmp_path / "configs" / "run.yaml").write_text(
        "data: {name: folder, root: imgs}\nmodel: {weights: pre/best.ckpt}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("configs/run.yaml")
    assert config.data.root == str(tmp_path / "configs" / "imgs")
    assert config.model.weights == str(tmp_path / "configs" / "pre" / "best.ckpt")
    assert load_config("configs/run.yaml", ["data.root=elsewhere"]).data.root == str(tmp_path / "elsewhere")
    # a config written for the old rule (relative to the working directory) still finds its folder, with a notice
    (tmp_path / "configs" / "old.yaml").write_text("data: {name: folder, root: data/imgs}\n")
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    capsys.readouterr()
    assert load_config("configs/old.yaml").data.root == str(tmp_path / "data" / "imgs")
    assert "notice: configs/old.yaml: data.root: data/imgs read from the working directory" in capsys.readouterr().err
    assert load_config({"data": {"name": "folder", "root": "rel"}}).data.root == "rel"  # a dict: taken as given
