"""Exploration, not a goal benchmark: other nets and airbench's tricks against the fmnist_fast recipe.

A stand-alone copy of the recipe's training loop (bf16 autocast, channels-last, one-cycle SGD with
Nesterov momentum, label smoothing, batched flips/crops/cutout from adlab, flip TTA), so that a net
or a trick can be tried without adding it to the package first. The README's "Then other nets
and airbench's tricks" figures come from these commands (validation = 6,000 training images held
out with the same seed every time; test = the 10,000 test images):

    python bench/explore_nets.py --epochs 8                                       # the recipe's net
    python bench/explore_nets.py --arch s2d64:2,128:2 --epochs 12                 # space-to-depth stem
    python bench/explore_nets.py --epochs 8 --whiten                              # whitened first layer
    python bench/explore_nets.py --epochs 8 --lookahead                           # airbench's lookahead
    python bench/explore_nets.py --arch conv32:1,64:3,128:3,256:3 --res --epochs 9  # residual net
    python bench/explore_nets.py --arch conv32:2,64:2,128:2 --epochs 16 --crop 2 --cutout 8 --shift 1 \\
        --tta-views                                                               # long recipe's net
    python bench/explore_nets.py --epochs 8 --muon 0.05 --muon-momentum 0.6       # Muon (as train.optimizer: muon)
    python bench/explore_nets.py --epochs 8 --altflip                             # alternating flips
    python bench/explore_nets.py --arch conv32:2,64:2,128:2 --epochs 12 --crop 2 --cutout 8 --shift 1 \
        --swa 3                             # weights averaged / snapshots fused over the one-cycle tail
    python bench/explore_nets.py --arch conv32:2,64:2,128:2 --epochs 12 --crop 2 --cutout 8 --shift 1 \
        --swa 3 --swa-lr 0.01               # SWA: one cycle over 9 epochs, then 3 at a constant rate
    python bench/explore_nets.py --bench --arch ...                               # ms a step only

`--arch`: blocks of WIDTH:CONVS, the first prefixed by `conv` (a full-resolution first block) or
`s2d` (a 2x2 space-to-depth stem: 14x14x4 input, no full-resolution layer). Plain blocks pool after
their last convolution, before its batch norm (the recipes' `pool_early`); `--res` makes them
residual blocks that pool after their first convolution (airbench96). Each result is printed and
appended to bench/results/explore_nets.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from adlab.data.sources import load_source
from adlab.data.transforms import random_cutout, random_hflip, random_translate

OUT = Path(__file__).resolve().parent / "results" / "explore_nets.jsonl"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="conv32:1,64:2,128:2")
    p.add_argument("--res", action="store_true", help="residual blocks, pooled after their first convolution")
    p.add_argument("--act", default="relu", choices=sorted(ACTIVATIONS))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--bs", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--ls", type=float, default=0.1, help="label smoothing")
    p.add_argument("--pct", type=float, default=0.25, help="one-cycle warm-up fraction")
    p.add_argument("--crop", type=int, default=0, help="random translation by up to this many pixels")
    p.add_argument("--cutout", type=int, default=0)
    p.add_argument("--shift", type=int, default=0, help="test-time diagonal shifts, as train.tta_shift")
    p.add_argument("--whiten", action="store_true", help="first convolution set from 3x3 patch eigenvectors")
    p.add_argument("--lookahead", action="store_true", help="airbench's lookahead every --la_every steps")
    p.add_argument("--la_every", type=int, default=5)
    p.add_argument("--muon", type=float, default=0.0,
                   help="lr of torch.optim.Muon for the 3x3 filters after the first convolution (0: all SGD)")
    p.add_argument("--muon-momentum", type=float, default=0.95)
    p.add_argument("--muon-wd", type=float, default=0.0, help="Muon's decoupled weight decay")
    p.add_argument("--muon-norm", action="store_true",
                   help="keep each Muon filter bank at norm sqrt(out channels), as airbench94_muon")
    p.add_argument("--muon-ns", type=int, default=5, help="Newton-Schulz iterations")
    p.add_argument("--altflip", action="store_true",
                   help="airbench's alternating flip: a fixed random half mirrored, then all swap every epoch")
    p.add_argument("--tta-views", action="store_true", help="also compare test-time view sets")
    p.add_argument("--swa", type=int, default=0, metavar="K",
                   help="also score the average of the weights at the end of the last K epochs (batch-norm "
                        "statistics recomputed on the training images) and the fusion of those K snapshots")
    p.add_argument("--swa-lr", type=float, default=None, help="with --swa: the one cycle covers the epochs before "
                   "the last K, which run at this constant rate (SWA); without it, the cycle covers every epoch")
    p.add_argument("--val", type=int, default=6000, help="training images held out for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench", action="store_true", help="only time training steps")
    p.add_argument("--tag", default="")
    return p.parse_args()


class ResidualBlock(nn.Module):
    """conv -> pool -> BN -> act, then (conv -> BN -> act) x (n - 1) added back to it (airbench96)."""

    def __init__(self, cin: int, width: int, n: int, pool: bool, act: type[nn.Module]):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1, bias=False),
                                  nn.MaxPool2d(2) if pool else nn.Identity(), nn.BatchNorm2d(width), act())
        body: list[nn.Module] = []
        for _ in range(n - 1):
            body += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), act()]
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.body(x) if len(self.body) else x


def build(spec: str, residual: bool, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels, size = 1, 28
    parts = spec.split(",")
    if parts[0].startswith("s2d"):
        layers.append(nn.PixelUnshuffle(2))
        channels, size = 4, 14
    parts[0] = parts[0].removeprefix("s2d").removeprefix("conv")
    for part in parts:
        width, n = map(int, part.split(":"))
        pool = size >= 2
        if residual:
            layers.append(ResidualBlock(channels, width, n, pool, act))
        else:
            for i in range(n):
                layers.append(nn.Conv2d(channels if i == 0 else width, width, 3, padding=1, bias=False))
                layers += [nn.MaxPool2d(2)] if pool and i == n - 1 else []
                layers += [nn.BatchNorm2d(width), act()]
        channels, size = width, size // 2 if pool else size
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size * size, 10))


def whiten_first_conv(net: nn.Module, images: torch.Tensor) -> None:
    """Half the first convolution's filters (up to 2 x k*k) become +/- the eigenvectors of the
    images' k x k patches scaled by 1/sqrt(eigenvalue): decorrelated inputs from the first step."""
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    k = conv.kernel_size[0]
    patches = F.unfold(images, k).transpose(1, 2).reshape(-1, conv.in_channels * k * k)
    eigenvalues, vectors = torch.linalg.eigh(torch.cov(patches.T))
    filters = (vectors / (eigenvalues + 1e-2).sqrt()).T.flip(0)  # largest eigenvalue first
    n = min(conv.out_channels // 2, len(filters))
    with torch.no_grad():
        weight = conv.weight.view(conv.out_channels, -1)
        weight[:n], weight[n:2 * n] = filters[:n], -filters[:n]


class Flat(nn.Module):
    """Parametrization that stores a convolution's filters as an (out, in*k*k) matrix, so that
    torch.optim.Muon (2D parameters only) can orthogonalise their updates."""

    def __init__(self, shape: torch.Size):
        super().__init__()
        self.shape = shape

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.view(self.shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(weight.shape[0], -1)


def muon_matrices(net: nn.Module) -> list[nn.Parameter]:
    """Every 3x3 convolution but the first becomes a Muon matrix; returns those matrices."""
    from torch.nn.utils import parametrize

    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)][1:]
    for conv in convs:
        parametrize.register_parametrization(conv, "weight", Flat(conv.weight.shape), unsafe=True)
    return [conv.parametrizations.weight.original for conv in convs]


def onecycle_factor(total: int, pct: float):
    """OneCycleLR's cosine shape (max/25 up to max, then down to max/1e4/25) as a factor of max."""
    import math

    up = pct * total

    def factor(step: int) -> float:
        if step < up:
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / up)) / 2
        t = (step - up) / max(1.0, total - up)
        return 1 / 25e4 + (1 - 1 / 25e4) * (1 + math.cos(math.pi * t)) / 2

    return factor


class Lookahead:
    """airbench's: every few steps the weights (and batch-norm statistics) move to an average of
    themselves, with a decay that rises as 0.95^every * progress^3."""

    def __init__(self, net: nn.Module, every: int):
        self.net, self.every = net, every
        self.slow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def step(self, step: int, total: int) -> None:
        if step % self.every == 0:
            self.update(0.95 ** self.every * (step / total) ** 3)

    @torch.no_grad()
    def update(self, decay: float) -> None:
        for key, value in self.net.state_dict().items():
            if value.dtype.is_floating_point:
                self.slow[key].lerp_(value, 1 - decay)
                value.copy_(self.slow[key])


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Moved dy, dx pixels with reflect padding (as the training translation)."""
    pad = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    return padded[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w]


@torch.no_grad()
def view_probs(net: nn.Module, x: torch.Tensor, dy: int = 0, dx: int = 0, flip: bool = False) -> torch.Tensor:
    out = []
    for i in range(0, len(x), 2000):
        xb = x[i:i + 2000]
        xb = shifted(xb, dy, dx) if dy or dx else xb
        xb = xb.flip(-1) if flip else xb
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(net(xb.contiguous(memory_format=torch.channels_last)).float().softmax(1))
    return torch.cat(out)


def tta_probs(net: nn.Module, x: torch.Tensor, shift: int) -> torch.Tensor:
    """Flip TTA, and with `shift` the recipe's two diagonal shifts (each with a quarter of the weight)."""
    views = {(0, 0): 0.5, (shift, shift): 0.25, (-shift, -shift): 0.25} if shift else {(0, 0): 1.0}
    return sum(w / 2 * view_probs(net, x, dy, dx, flip) for (dy, dx), w in views.items() for flip in (False, True))


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, shift: int) -> float:
    return (tta_probs(net, x, shift).argmax(1) == y).float().mean().item()


def view_sets(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy under several test-time view sets (one-pixel shifts, each with its mirror image)."""
    probs = {(dy, dx, f): view_probs(net, x, dy, dx, f) for dy in (-1, 0, 1) for dx in (-1, 0, 1) for f in (0, 1)}
    both = lambda d: {(*k, f): w / 2 for k, w in d.items() for f in (0, 1)}  # noqa: E731
    sets = {
        "none": {(0, 0, 0): 1.0},
        "flip": both({(0, 0): 1.0}),
        "flip+2 diagonal (shipped)": both({(0, 0): .5, (1, 1): .25, (-1, -1): .25}),
        "flip+4 diagonal": both({(0, 0): .5, (1, 1): .125, (-1, -1): .125, (1, -1): .125, (-1, 1): .125}),
        "flip+4 axis": both({(0, 0): .5, (1, 0): .125, (-1, 0): .125, (0, 1): .125, (0, -1): .125}),
        "flip+8 neighbours": both({**{(dy, dx): .5 / 8 for dy in (-1, 0, 1) for dx in (-1, 0, 1)}, (0, 0): .5}),
    }
    return {name: round((sum(w * probs[k] for k, w in s.items()).argmax(1) == y).float().mean().item(), 4)
            for name, s in sets.items()}


def main() -> None:
    a = options()
    torch.manual_seed(a.seed)
    data = load_source("fashion_mnist", None, download=False)
    xtr, ytr, xte, yte = data.train_x, data.train_y, data.test_x, data.test_y
    held = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))
    xva, yva, xtr, ytr = xtr[held[:a.val]], ytr[held[:a.val]], xtr[held[a.val:]], ytr[held[a.val:]]
    unit = xtr.float() / 255
    mean, std = unit.mean().item(), unit.std().item()
    normalise = lambda x: (x.float() / 255 - mean) / std  # noqa: E731
    val_in, test_in = normalise(xva), normalise(xte)  # what the net is scored on

    net = build(a.arch, a.res, ACTIVATIONS[a.act])
    if a.whiten:
        whiten_first_conv(net, normalise(xtr[:10000]))
    net = net.to(memory_format=torch.channels_last)
    steps = len(xtr) // a.bs
    matrices = muon_matrices(net) if a.muon else []
    taken = {id(p) for p in matrices}
    opt = torch.optim.SGD([p for p in net.parameters() if id(p) not in taken], lr=a.lr, momentum=0.9,
                          nesterov=True, weight_decay=a.wd)
    muon = torch.optim.Muon(matrices, lr=a.muon, momentum=a.muon_momentum, weight_decay=a.muon_wd,
                            ns_steps=a.muon_ns) if matrices else None
    if a.muon_norm:
        renorm(matrices)
    if a.bench:
        return time_steps(net, opt, a, muon, matrices)
    if a.swa_lr and a.muon:
        raise SystemExit("--swa-lr: SGD only")
    cycle_epochs = a.epochs - a.swa if a.swa_lr else a.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=cycle_epochs * steps, pct_start=a.pct)
    averaged = torch.optim.swa_utils.AveragedModel(net) if a.swa else None
    snapshots: list[tuple[torch.Tensor, torch.Tensor]] = []  # (val, test) probabilities at each tail epoch's end
    muon_sched = torch.optim.lr_scheduler.LambdaLR(muon, onecycle_factor(a.epochs * steps, a.pct)) if muon else None
    mirrored = torch.rand(len(xtr)) < 0.5  # --altflip: which images start mirrored
    lookahead = Lookahead(net, a.la_every) if a.lookahead else None
    start = time.perf_counter()
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(xtr))
        for s in range(steps):
            idx = order[s * a.bs:(s + 1) * a.bs]
            x = xtr[idx].float().div_(255)
            x = random_translate(x, a.crop) if a.crop else x
            if a.altflip:
                x = torch.where((mirrored[idx] ^ bool(epoch % 2))[:, None, None, None], x.flip(-1), x)
            else:
                x = random_hflip(x)
            x = (x - mean) / std
            x = (random_cutout(x, a.cutout) if a.cutout else x).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(net(x), ytr[idx], label_smoothing=a.ls)
            net.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if epoch < cycle_epochs:
                sched.step()
            elif s == 0:
                for group in opt.param_groups:
                    group["lr"] = a.swa_lr
            if muon:
                muon.step()
                muon_sched.step()
                if a.muon_norm:
                    renorm(matrices)
            if lookahead:
                lookahead.step(epoch * steps + s + 1, a.epochs * steps)
        if a.swa and epoch >= a.epochs - a.swa:
            averaged.update_parameters(net)
            net.eval()
            snapshots.append((tta_probs(net, val_in, a.shift), tta_probs(net, test_in, a.shift)))
    if lookahead:
        lookahead.update(1.0)  # end on the average itself
    train_s = time.perf_counter() - start
    net.eval()
    result = {"tag": a.tag, "argv": " ".join(sys.argv[1:]), "val": round(accuracy(net, val_in, yva, a.shift), 4),
              "test": round(accuracy(net, test_in, yte, a.shift), 4), "train_s": round(train_s, 1),
              "params": sum(p.numel() for p in net.parameters())}
    if a.swa:
        train_batches = (normalise(xtr[i:i + 1000]).contiguous(memory_format=torch.channels_last)
                         for i in range(0, len(xtr), 1000))
        torch.optim.swa_utils.update_bn(train_batches, averaged)
        averaged.eval()
        result["swa_val"] = round(accuracy(averaged, val_in, yva, a.shift), 4)
        result["swa_test"] = round(accuracy(averaged, test_in, yte, a.shift), 4)
        result["snapshots_val"] = round((sum(v for v, _ in snapshots).argmax(1) == yva).float().mean().item(), 4)
        result["snapshots_test"] = round((sum(t for _, t in snapshots).argmax(1) == yte).float().mean().item(), 4)
    if a.tta_views:
        result["views_val"], result["views_test"] = view_sets(net, val_in, yva), view_sets(net, test_in, yte)
    print(json.dumps(result), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(result) + "\n")


@torch.no_grad()
def renorm(matrices: list[nn.Parameter]) -> None:
    for m in matrices:
        m.mul_(len(m) ** 0.5 / m.norm())


def time_steps(net: nn.Module, opt: torch.optim.Optimizer, a: argparse.Namespace,
               muon: torch.optim.Optimizer | None, matrices: list[nn.Parameter]) -> None:
    x = torch.randn(a.bs, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.bs,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        net.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if muon:
            muon.step()
            if a.muon_norm:
                renorm(matrices)

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(6):
            step()
        best = min(best, (time.perf_counter() - start) / 6)
    print(f"{a.arch} residual={a.res} muon={a.muon}: {best * 1000:.1f} ms a step of {a.bs}, "
          f"{sum(p.numel() for p in net.parameters()):,} parameters")


if __name__ == "__main__":
    main()
