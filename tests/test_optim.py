"""MuonSGD: torch's own SGD and Muon steps, filters viewed as matrices, one optimizer for Lightning."""

import pytest
import torch

from adlab.config import ModelConfig, TrainConfig
from adlab.models.factory import build_model
from adlab.optim import MuonSGD, build_optimization, muon_parameters
from adlab.settings.cnn import CnnConfig


def trained(make, shape=(8, 12), steps=5):
    """A weight of `shape` and a bias after `steps` steps of a least-squares problem."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(*shape))
    b = torch.nn.Parameter(torch.randn(shape[0]))
    optimizer = make(w, b)
    for _ in range(steps):
        x = torch.randn(4, w[0].numel())
        loss = ((x @ w.view(len(w), -1).T + b) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return w.detach(), b.detach()


def test_sgd_groups_step_exactly_as_torch_sgd():
    expected = trained(lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3))
    got = trained(lambda w, b: MuonSGD([w, b], lr=0.1, momentum=0.9, weight_decay=1e-3))
    assert all(torch.equal(e, g) for e, g in zip(expected, got, strict=True))


def test_muon_groups_step_as_torch_muon_and_filters_as_their_matrix():
    expected, _ = trained(lambda w, b: torch.optim.Muon([w], lr=0.05, momentum=0.6, weight_decay=0.0))
    matrix, _ = trained(lambda w, b: MuonSGD([{"params": [w], "muon": True}], lr=0.05, muon_momentum=0.6))
    filters, _ = trained(
        lambda w, b: MuonSGD([{"params": [w], "muon": True}], lr=0.05, muon_momentum=0.6), shape=(8, 3, 2, 2)
    )
    assert torch.equal(expected, matrix)
    assert filters.shape == (8, 3, 2, 2) and torch.equal(expected, filters.reshape(8, -1))
    plain_sgd, _ = trained(lambda w, b: MuonSGD([w], lr=0.05, momentum=0.6))
    assert not torch.allclose(plain_sgd, matrix)  # the flag does switch the update rule


def test_channels_last_filters_step_as_contiguous_ones():
    def step(channels_last: bool) -> torch.Tensor:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 8, 3)
        x = torch.randn(4, 3, 6, 6)
        if channels_last:
            conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        optimizer = MuonSGD([{"params": [conv.weight], "muon": True}], lr=0.05)
        for _ in range(3):
            optimizer.zero_grad()
            conv(x).square().mean().backward()
            optimizer.step()
        return conv.weight.detach().contiguous()

    assert torch.allclose(step(True), step(False), atol=1e-6)


def test_hidden_filters_go_to_muon_input_output_norms_and_biases_to_sgd():
    net = build_model(ModelConfig(name="cnn", cnn=CnnConfig(conv_channels=[8, 16], hidden=[32])), (1, 28, 28), 10).net
    hidden, rest = muon_parameters(net)
    weights = [p for p in net.parameters() if p.ndim >= 2]
    assert [p.shape for p in hidden] == [p.shape for p in weights[1:-1]] and len(hidden) == 4  # 3 convs, 1 hidden fc
    assert all(p.ndim == 1 for p in rest if p is not weights[0] and p is not weights[-1])
    assert len(hidden) + len(rest) == len(list(net.parameters()))


def test_layers_are_found_by_type_not_by_shape_or_order():
    class Net(torch.nn.Module):  # a token before the layers, a depthwise convolution, a layer scale
        def __init__(self):
            super().__init__()
            self.token = torch.nn.Parameter(torch.zeros(1, 4, 8))
            self.stem = torch.nn.Conv2d(3, 8, 3)
            self.depthwise = torch.nn.Conv2d(8, 8, 3, groups=8)
            self.scale = torch.nn.Parameter(torch.ones(8, 1, 1))
            self.mix = torch.nn.Conv2d(8, 16, 1)
            self.fc = torch.nn.Linear(16, 16)
            self.out = torch.nn.Linear(16, 3)

    net = Net()
    hidden, rest = muon_parameters(net)
    assert {id(p) for p in hidden} == {id(net.mix.weight), id(net.fc.weight)}
    assert {id(net.token), id(net.stem.weight), id(net.depthwise.weight), id(net.scale), id(net.out.weight)} <= {
        id(p) for p in rest
    }


def test_muon_config_builds_one_optimizer_whose_muon_momentum_survives_onecycle():
    built = build_model(ModelConfig(name="resnet18"), (1, 32, 32), 4)
    cfg = TrainConfig(
        optimizer="muon",
        lr=0.05,
        muon_lr=0.02,
        muon_momentum=0.6,
        weight_decay=5e-4,
        backbone_lr_scale=0.5,
        scheduler={"name": "onecycle"},
    )
    trainer = type("T", (), {"estimated_stepping_batches": 10})()
    result = build_optimization(built.net, cfg, built.head, trainer)
    optimizer, scheduler = result["optimizer"], result["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, MuonSGD)
    muon = [g for g in optimizer.param_groups if g["muon"]]
    sgd = [g for g in optimizer.param_groups if not g["muon"]]
    # the body's Muon group at muon_lr x backbone_lr_scale (onecycle starts at max_lr / 25)
    assert len(muon) == 1 and muon[0]["max_lr"] == pytest.approx(0.01) and muon[0]["weight_decay"] == 0.0
    assert sorted(g["max_lr"] for g in sgd) == pytest.approx([0.025, 0.05])
    assert all(g["weight_decay"] == 5e-4 for g in sgd)
    assert {id(p) for g in sgd for p in g["params"]} >= {id(built.net.conv1.weight), id(built.net.fc.weight)}
    x = torch.randn(2, 1, 32, 32)
    for _ in range(3):
        optimizer.zero_grad()
        built.net(x).sum().backward()
        optimizer.step()
        scheduler.step()
    assert muon[0]["muon_momentum"] == 0.6  # one-cycle cycles the SGD groups' momentum only
    assert sgd[0]["momentum"] != 0.9


def test_optimizer_state_round_trips_through_a_checkpoint():
    built = build_model(ModelConfig(name="cnn", cnn=CnnConfig(conv_channels=[8, 16])), (1, 28, 28), 10)
    optimizer = build_optimization(built.net, TrainConfig(optimizer="muon", lr=0.05))["optimizer"]
    built.net(torch.randn(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    again = build_optimization(built.net, TrainConfig(optimizer="muon", lr=0.05))["optimizer"]
    again.load_state_dict(optimizer.state_dict())
    buffers = lambda o: [o.state[p]["momentum_buffer"] for g in o.param_groups for p in g["params"]]  # noqa: E731
    assert len(buffers(again)) == len(list(built.net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers(optimizer), buffers(again), strict=True))
