"""A folder data set of 100,000 small images: indexing time (goal <= 10 s) and training by
streaming from disk with bounded memory (data.storage: disk).

The images are Fashion-MNIST training images written once as PNG files into class folders
(cached in $TMPDIR/adlab-bench-folder-100k). One epoch of a small CNN is trained three ways, each
as its own `adlab train` process: streamed from disk with 10,000 and with 100,000 images (peak
memory should not grow with the number of files), and decoded into memory with 100,000.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import adlab_train, record  # noqa: E402

N = 100_000
ROOT = Path(tempfile.gettempdir()) / "adlab-bench-folder-100k"
CONFIG = Path(__file__).resolve().parent / "folder_scale.yaml"


def make_tree(root: Path, n: int) -> None:
    if (root / "done").is_file():
        return
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from adlab.data.sources import FASHION_MNIST_CLASSES, load_source

    data = load_source("fashion_mnist", None)
    images = data.train_x[:, 0].numpy()
    labels = data.train_y.numpy()
    for c in range(len(FASHION_MNIST_CLASSES)):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        j = i % len(images)
        Image.fromarray(images[j]).save(root / f"class{labels[j]}" / f"{i:06d}.png")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(n)))
    (root / "done").write_text(str(n))


def subset(root: Path, n: int) -> Path:
    """The first n images as a tree of symbolic links."""
    small = root.parent / f"{root.name}-{n}"
    if (small / "done").is_file():
        return small
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        (small / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir()):
            if int(f.stem) < n:
                os.symlink(f, small / cls.name / f.name)
    (small / "done").write_text(str(n))
    return small


def main() -> None:
    start = time.perf_counter()
    make_tree(ROOT, N)
    print(f"tree of {N:,} PNG files ready in {time.perf_counter() - start:.0f} s")
    from adlab.data.folder import index_folder

    start = time.perf_counter()
    _, samples = index_folder(ROOT)
    index_seconds = time.perf_counter() - start
    assert len(samples) == N
    small = subset(ROOT, N // 10)
    rows = [{"measure": f"index {N:,} image files", "value": index_seconds, "unit": "s", "goal": "<= 10 s",
             "met": index_seconds <= 10}]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for label, root, storage in (("disk, 10,000 images", small, "disk"), ("disk, 100,000 images", ROOT, "disk"),
                                     ("memory, 100,000 images", ROOT, "memory")):
            seconds, rss, metrics = adlab_train(str(CONFIG), Path(tmp) / storage, f"data.root={root}",
                                                f"data.storage={storage}")
            runs[label] = (seconds, rss, metrics)
            rows += [{"measure": f"{label}: whole process (1 epoch)", "value": seconds, "unit": "s", "goal": "-",
                      "met": None},
                     {"measure": f"{label}: images/s in training", "value": metrics["num_train"] /
                      metrics["train_seconds"], "unit": "img/s", "goal": "-", "met": None},
                     {"measure": f"{label}: peak resident memory", "value": rss / 1024, "unit": "GiB", "goal": "-",
                      "met": None}]
    growth = runs["disk, 100,000 images"][1] - runs["disk, 10,000 images"][1]
    rows.append({"measure": "disk: memory growth from 10k to 100k files", "value": growth, "unit": "MiB",
                 "goal": "<= 100 MiB (bounded)", "met": growth <= 100})
    record("folder_scale", rows)


if __name__ == "__main__":
    main()
