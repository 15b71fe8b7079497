"""Not a goal: would a decoder of nearest-neighbour upsampling + 3x3 convolution train faster on a CPU than
adlab's transposed convolutions, at the same quality? Assignment F's 16-32-32 autoencoder (latent 10,
Dropout2d 0.2), both decoders side by side:
- throughput: the plain training loop of bench/common.py (median of 30 steps at batch 256, 2 threads), in
  fp32 and bf16, in the layout adlab picks for the net;
- quality: 3 epochs (F --quick's) of Adam 1e-3 at batch 256 in bf16 on the 60,000 real Fashion-MNIST
  training images, then the test MSE per pixel on the 10,000 test images.

    python bench/explore_decoder.py     # appends to results/explore_decoder.jsonl (about 3 minutes)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, cpu_model, plain_ae_loop  # noqa: E402

from adlab.models import autoencoders  # noqa: E402

TRANSPOSED = autoencoders._conv_block


def upsample_block(c_in, c_out, act, batch_norm, dropout, transpose=False, output_padding=0):
    """The same block with the transposed convolution replaced by 2x nearest upsampling and a 3x3 convolution
    (output_padding's odd sizes: the upsampled map is cropped by the convolution's padding)."""
    if not transpose:
        return TRANSPOSED(c_in, c_out, act, batch_norm, dropout)
    layers: list[nn.Module] = [_Upsample(output_padding), nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
    layers += [act()]
    layers += [nn.Dropout2d(dropout)] if dropout else []
    return layers


class _Upsample(nn.Module):
    def __init__(self, output_padding: int):
        super().__init__()
        self.trim = 1 - output_padding  # the transposed conv gives 2h - 1 + output_padding

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x[..., : x.shape[-2] - self.trim, : x.shape[-1] - self.trim] if self.trim else x


def fashion_mnist():
    from adlab.data.idx import read_idx

    root = Path("/usr/share/datasets/fashion-mnist")
    train = torch.from_numpy(read_idx(root / "train-images-idx3-ubyte.gz").copy()).unsqueeze(1).float() / 255
    test = torch.from_numpy(read_idx(root / "t10k-images-idx3-ubyte.gz").copy()).unsqueeze(1).float() / 255
    return train, test


def quality(train, test, epochs: int = 3) -> tuple[float, float]:
    """(test MSE per pixel, seconds) after `epochs` of training in bf16."""
    from adlab.models.layout import channels_last_pays

    torch.manual_seed(0)
    net = autoencoders.AutoEncoder(1, (28, 28), 10, (16, 32, 32), dropout=0.2)
    layout = torch.channels_last if channels_last_pays(net, True, "bf16-mixed") else torch.contiguous_format
    net = net.to(memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for index in torch.randperm(len(train)).split(256):
            x = train[index].contiguous(memory_format=layout)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                recon = net(x)["recon"]
            loss = F.mse_loss(recon.float(), x, reduction="none").flatten(1).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        errors = [F.mse_loss(net(x.contiguous(memory_format=layout))["recon"].float(), x, reduction="sum")
                  for x in test.split(1000)]
    return float(sum(errors) / test.numel()), seconds


def main() -> None:
    torch.set_num_threads(2)
    train, test = fashion_mnist()
    rows = []
    for name, block in (("transposed conv", TRANSPOSED), ("upsample + conv", upsample_block)):
        autoencoders._conv_block = block
        row = {"decoder": name, "machine": cpu_model(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        for bf16 in (False, True):
            from adlab.models.layout import channels_last_pays

            net = autoencoders.AutoEncoder(1, (28, 28), 10, (16, 32, 32), dropout=0.2)
            cl = channels_last_pays(net, True, "bf16-mixed" if bf16 else "32-true")
            row[f"img_s_{'bf16' if bf16 else 'fp32'}"] = round(plain_ae_loop(train[:10240], cl, bf16))
        row["test_mse_3_epochs"], row["train_seconds_3_epochs"] = quality(train, test)
        print(row, flush=True)
        rows.append(row)
    autoencoders._conv_block = TRANSPOSED
    with open(RESULTS / "explore_decoder.jsonl", "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
