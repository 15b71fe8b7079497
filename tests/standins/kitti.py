"""KITTI's object devkit as its two zips unpack: training/image_2/NNNNNN.png and training/label_2/NNNNNN.txt,
one line per object: type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"Car": (220, 40, 40), "Pedestrian": (40, 220, 40), "Cyclist": (40, 40, 220), "Van": (200, 200, 40)}


def write_kitti(root: Path, images: int = 16, size=(248, 75), seed: int = 0) -> Path:
    """Wide scenes (KITTI is 1242x375; these are a fifth of that) with coloured boxes per type, and a
    DontCare line as the devkit has. Every image holds a car and most a pedestrian or cyclist."""
    rng = np.random.default_rng(seed)
    width, height = size
    image_dir = Path(root) / "training" / "image_2"
    label_dir = Path(root) / "training" / "label_2"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for index in range(images):
        picture = rng.integers(60, 110, size=(height, width, 3), dtype=np.uint8)
        lines = []
        kinds = ["Car", ["Pedestrian", "Cyclist", "Van"][index % 3]] + (["Car"] if index % 2 else [])
        for slot, kind in enumerate(kinds):
            w, h = int(rng.integers(24, 40)), int(rng.integers(24, 40))
            x1 = slot * (width // 3) + int(rng.integers(0, width // 3 - w))
            y1 = int(rng.integers(0, height - h))
            picture[y1 : y1 + h, x1 : x1 + w] = COLOURS[kind]
            lines.append(
                f"{kind} 0.00 0 -1.57 {x1:.2f} {y1:.2f} {x1 + w:.2f} {y1 + h:.2f} 1.50 1.60 3.70 1.00 1.50 20.00 -1.50"
            )
        lines.append("DontCare -1 -1 -10 5.00 5.00 15.00 15.00 -1 -1 -1 -1000 -1000 -1000 -10")
        Image.fromarray(picture).save(image_dir / f"{index:06d}.png")
        (label_dir / f"{index:06d}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)
