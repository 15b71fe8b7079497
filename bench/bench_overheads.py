"""Where the time goes: Lightning's per-step cost beside a raw loop, and the data pipeline's
share of an epoch.

1. Lightning overhead: the digits CNN (a small model, where fixed costs show most) and the
   Fashion-MNIST autoencoder recipe trained for the same steps on the same in-memory batches by
   Lightning's Trainer (as adlab runs it, with its history callback) and by a hand-written loop.
2. Data pipeline share: inside a real Lightning epoch of the Fashion-MNIST recipe, the time
   between one step's end and the next step's start (fetching the batch from the tensors,
   augmentation, normalisation, channels-last copy) against the whole epoch.
"""

import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, record  # noqa: E402

from adlab.config import load_config  # noqa: E402
from adlab.data.datamodule import ImageDataModule  # noqa: E402
from adlab.optim import build_optimization  # noqa: E402
from adlab.tasks import get_task  # noqa: E402
from adlab.tasks.lightning import make_trainer, prepare_process  # noqa: E402
from adlab.tasks.lightning.callbacks import HistoryWriter  # noqa: E402


class BatchGaps(L.Callback):
    """Seconds spent outside training steps (between a step's end and the next step's start)."""

    def __init__(self):
        self.gaps = 0.0
        self.steps = 0
        self._end = None
        self.epoch_seconds = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start = self._end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.gaps += time.perf_counter() - self._end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._end = time.perf_counter()
        self.steps += 1
        self.epoch_seconds = self._end - self._epoch_start


def setup(config_path: str, overrides: list[str]):
    config = load_config(ROOT / config_path, overrides)
    recipe = get_task(config.task)
    channels, normalization = recipe.input_requirements(config)  # as train() does (autoencoders: images in [0, 1])
    data = ImageDataModule(config.data, config.train.batch_size, channels=channels, normalization=normalization,
                           channels_last=config.train.channels_last)
    info = data.prepare()
    torch.manual_seed(0)
    built = recipe.build(config, info)
    meta = {"config": config.to_dict(), "data": info.to_dict(), "head": built.head, "task": config.task}
    return config, data, built, recipe.module(built, config, meta)


def lightning_fit(config, data, module, callbacks, run_dir: Path) -> float:
    trainer = make_trainer(config.train, callbacks, show_bar=False, run_dir=run_dir, has_val=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return time.perf_counter() - start


def raw_loop(config, data, module) -> float:
    """The same steps by hand: batches from the same loader and transform, the same optimizer and
    precision (bf16 autocast where the config asks for it)."""
    net = module.model.to(memory_format=torch.channels_last)
    optimizer = build_optimization(net, config.train)["optimizer"]
    bf16 = config.train.precision.startswith("bf16")
    start = time.perf_counter()
    for _ in range(config.train.epochs):
        for x, y in data.train_dataloader():
            x = data.transform(x, train=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = module.losses(x, noisy=False)["loss"] if config.task == "autoencode" else \
                    F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    prepare_process()
    small = ["data.val_fraction=0", "train.epochs=20", "train.scheduler=null"]
    config, data, _, module = setup("configs/digits_cnn.yaml", small)
    steps = config.train.epochs * len(data.train_dataloader())
    raw = raw_loop(config, data, module) / steps
    with tempfile.TemporaryDirectory() as tmp:
        config, data, _, module = setup("configs/digits_cnn.yaml", small)
        ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=Path(tmp) / "ckpt", save_last=True)
        history = HistoryWriter(Path(tmp) / "history.csv", [])
        lit = lightning_fit(config, data, module, [history, ckpt], Path(tmp)) / steps

        config, data, _, module = setup("configs/fmnist_fast.yaml", ["data.val_fraction=0", "train.epochs=1"])
        gaps = BatchGaps()
        lightning_fit(config, data, module, [gaps], Path(tmp))

        ae = "configs/autoencoders/fmnist_ae_fast.yaml"
        config, data, _, module = setup(ae, ["train.epochs=1", "train.scheduler=null"])
        ae_steps = len(data.train_dataloader())
        ae_raw = raw_loop(config, data, module) / ae_steps
        config, data, _, module = setup(ae, ["train.epochs=1", "train.scheduler=null"])
        ae_lit = lightning_fit(config, data, module, [HistoryWriter(Path(tmp) / "ae.csv", [])], Path(tmp)) / ae_steps
    rows = [
        {"measure": "digits cnn, raw loop per step", "value": raw * 1e3, "unit": "ms", "goal": "-", "met": None},
        {"measure": "digits cnn, Lightning per step", "value": lit * 1e3, "unit": "ms", "goal": "-", "met": None},
        {"measure": "Lightning overhead per step", "value": (lit - raw) * 1e3, "unit": "ms", "goal": "-",
         "met": None},
        {"measure": "fmnist AE (bf16), raw loop per step", "value": ae_raw * 1e3, "unit": "ms", "goal": "-",
         "met": None},
        {"measure": "fmnist AE (bf16), Lightning per step", "value": ae_lit * 1e3, "unit": "ms", "goal": "-",
         "met": None},
        {"measure": "fmnist_fast epoch (Lightning, no val)", "value": gaps.epoch_seconds, "unit": "s", "goal": "-",
         "met": None},
        {"measure": "fmnist_fast: data pipeline share of epoch", "value": gaps.gaps / gaps.epoch_seconds,
         "unit": "", "goal": "small", "met": None},
    ]
    record("overheads", rows)


if __name__ == "__main__":
    main()
