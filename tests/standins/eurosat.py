"""EuroSAT RGB as torchvision unzips it: eurosat/2750/<Class>/<Class>_<n>.jpg, 64x64 JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]


def write_eurosat(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "eurosat" / "2750"
    for index, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        colour = np.array([(index * 70) % 256, (index * 130) % 256, (index * 190) % 256], dtype=np.int16)
        for n in range(1, per_class + 1):
            image = np.clip(colour + rng.integers(-25, 25, size=(64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / name / f"{name}_{n}.jpg", quality=90)
    return folder
