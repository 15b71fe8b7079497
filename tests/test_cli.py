import subprocess
import sys

from adlab.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit:
        assert exit.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "fuse", "config", "table"):
        assert command in out


def test_help_does_not_import_torch():
    code = "import sys; from adlab.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "configs/digits_cnn.yaml", "--set", "train.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "name: digits" in out and "early_stopping_patience: null" in out


def test_train_predict_table_through_the_cli(digits_run, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 0).save(image)
    assert main(["predict", str(digits_run.path), str(image), "--top", "1"]) == 0
    assert str(image) in capsys.readouterr().out
    assert main(["table", str(digits_run.path), "--metrics", "accuracy,macro_f1"]) == 0
    out = capsys.readouterr().out
    assert "| run | accuracy | macro_f1 |" in out and f"{digits_run.metrics['accuracy']:.4f}" in out


def test_train_command_end_to_end(tmp_path, capsys):
    code = main(
        [
            "train",
            "configs/digits_cnn.yaml",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "train.epochs=1",
            "--set",
            "train.progress_bar=false",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "test: accuracy=" in out and "epoch 1/1" in out
    assert (tmp_path / "r" / "metrics.json").is_file()
