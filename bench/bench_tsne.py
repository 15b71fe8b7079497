"""t-SNE of 10,000 latent codes (goal <= 30 s): scikit-learn's Barnes-Hut against openTSNE's FFT,
both as adlab calls them (adlab.tasks.autoencode.latent.tsne_2d; openTSNE needs `pip install openTSNE`).

The codes are the 10,000 Fashion-MNIST test images encoded by a trained autoencoder when
bench_recipes.py left one (bench/results/fmnist_ae_latents.npz), else their 10 leading principal
components. Quality is the 10-nearest-neighbour accuracy of the classes inside each 2-D map
(5-fold), so a fast map that scrambles the classes does not win.
"""

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, record  # noqa: E402

POINTS = 10_000


def codes() -> tuple[np.ndarray, np.ndarray, str]:
    saved = RESULTS / "fmnist_ae_latents.npz"
    if saved.is_file():
        data = np.load(saved)
        return data["test_z"][:POINTS], data["test_y"][:POINTS], "autoencoder codes"
    from sklearn.decomposition import PCA

    from adlab.data.sources import load_source

    images = load_source("fashion_mnist", None)
    x = images.test_x[:POINTS].reshape(POINTS, -1).float().numpy() / 255.0
    return PCA(10, random_state=0).fit_transform(x), images.test_y[:POINTS].numpy(), "10 principal components"


def map_quality(xy: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return float(cross_val_score(KNeighborsClassifier(10), xy, y, cv=5).mean())


def main() -> None:
    from adlab.tasks.autoencode.latent import tsne_2d

    z, y, what = codes()
    rows = []
    engines = ["sklearn"] + (["opentsne"] if importlib.util.find_spec("openTSNE") else [])
    for engine in engines:
        start = time.perf_counter()
        xy = tsne_2d(z, seed=0, engine=engine)
        seconds = time.perf_counter() - start
        rows += [{"measure": f"{engine}: {len(z):,} {what}", "value": seconds, "unit": "s", "goal": "<= 30 s",
                  "met": seconds <= 30},
                 {"measure": f"{engine}: 10-NN accuracy inside the map", "value": map_quality(xy, y), "unit": "",
                  "goal": "-", "met": None}]
    record("tsne", rows)


if __name__ == "__main__":
    main()
