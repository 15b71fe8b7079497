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
    config = load_config(path, ["train.lr=0.5", "model.hidden=[32, 16]", "data.classes=[Bag, 3]"])
    assert config.train.lr == 0.5
    assert config.train.epochs == 3
    assert config.model.hidden == [32, 16]
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
