import numpy as np
import pytest
from PIL import Image

import adlab
from adlab.errors import AdlabError, DataError


def test_evaluate_reproduces_the_run_metrics(digits_run, tmp_path):
    metrics = adlab.evaluate(digits_run.path, out=tmp_path / "eval", verbose=False)
    assert metrics["accuracy"] == pytest.approx(digits_run.metrics["accuracy"], abs=1e-9)
    assert metrics["confusion_matrix"] == digits_run.metrics["confusion_matrix"]
    assert (tmp_path / "eval" / "predictions.csv").is_file()
    assert (tmp_path / "eval" / "figures" / "confusion_matrix.png").is_file()


def test_evaluate_on_other_data_matches_classes_by_name(digits_run, tmp_path):
    """Some of the trained classes, in another order, under folder names data.class_map renames."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split in ("train", "test"):
        for folder, digit in (("one", 1), ("zero", 0)):  # alphabetical: one before zero, unlike the model's 0, 1
            (tmp_path / "mine" / split / folder).mkdir(parents=True)
            for i in np.flatnonzero(digits.target == digit)[:15]:
                Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(
                    tmp_path / "mine" / split / folder / f"{i}.png"
                )
    sets = ["data.name=folder", f"data.root={tmp_path / 'mine'}", "data.class_map={zero: '0', one: '1'}"]
    metrics = adlab.evaluate(digits_run.path, overrides=sets, out=tmp_path / "e", verbose=False)
    assert metrics["num_test"] == 30 and metrics["accuracy"] > 0.8  # scored against the right digits
    assert metrics["class_names"][:2] == ["0", "1"] and metrics["per_class_accuracy"]["5"] is None
    assert sum(sum(row) for row in metrics["confusion_matrix"][:2]) == 30 and metrics["confusion_matrix"][2] == [0] * 10
    with pytest.raises(DataError, match="'one' is not one of them; data.class_map renames a folder's class"):
        adlab.evaluate(digits_run.path, overrides=sets[:2], out=tmp_path / "e2", verbose=False)
    with pytest.raises(DataError, match="data.class_map: 'two' is not a class of"):
        adlab.evaluate(
            digits_run.path, overrides=[*sets[:2], "data.class_map={two: '2'}"], out=tmp_path / "e3", verbose=False
        )
    with pytest.raises(AdlabError, match="only changes data"):
        adlab.evaluate(digits_run.path, overrides=["train.lr=1"], out=tmp_path / "e", verbose=False)


def test_evaluate_on_another_test_split(digits_run, tmp_path):
    metrics = adlab.evaluate(digits_run.path, overrides=["data.split_seed=7"], out=tmp_path / "e", verbose=False)
    assert metrics["num_test"] == 360 and metrics["accuracy"] > 0.8


def test_predict_digit_images(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths = []
    for i in range(20):
        path = tmp_path / f"{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(path)
        paths.append(path)
    results = adlab.predict(digits_run.path, paths, top=2)
    assert len(results) == 20 and all(len(ranked) == 2 for _, ranked in results)
    predicted = [int(ranked[0][0]) for _, ranked in results]
    assert np.mean(np.array(predicted) == digits.target[:20]) >= 0.8
    for _, ranked in results:
        assert ranked[0][1] >= ranked[1][1]


def test_predict_unreadable_image(digits_run, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        adlab.predict(digits_run.path, [bad])
