"""A tiny YOLO data set of coloured rectangles on noise: easy to learn, exact labels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_rectangles(root: Path, n_train: int = 16, n_val: int = 6, size=(128, 96), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    width, height = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = (rng.random((height, width, 3)) * 60).astype(np.uint8)
            lines = []
            for _ in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, 2))
                w, h = (int(v) for v in rng.integers(16, 40, 2))
                x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
                img[y : y + h, x : x + w] = (230, 30, 30) if c == 0 else (30, 230, 30)
                lines.append(
                    f"{c} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"
                )
            Image.fromarray(img).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: red, 1: green}\n")
    return root / "data.yaml"


@pytest.fixture
def rectangles(tmp_path) -> Path:
    return make_rectangles(tmp_path / "rects")
