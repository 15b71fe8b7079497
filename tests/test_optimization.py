import pytest
import torch

from adlab.config import ModelConfig, TrainConfig
from adlab.models.factory import build_model
from adlab.optim import build_optimization, parameter_groups


def _net():
    return build_model(ModelConfig(name="resnet18"), (1, 32, 32), 4)


def test_single_group_by_default():
    built = _net()
    groups = parameter_groups(built.net, TrainConfig(), built.head)
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(built.net.parameters()))


def test_backbone_lr_scale_gives_the_body_a_smaller_rate():
    built = _net()
    cfg = TrainConfig(lr=0.01, backbone_lr_scale=0.1)
    optimizer = build_optimization(built.net, cfg, built.head)["optimizer"]
    head, body = optimizer.param_groups
    assert head["lr"] == pytest.approx(0.01) and body["lr"] == pytest.approx(0.001)
    assert {id(p) for p in head["params"]} == {id(built.net.fc.weight), id(built.net.fc.bias)}


def test_frozen_parameters_are_not_optimized():
    built = build_model(ModelConfig(name="resnet18", freeze=True), (1, 32, 32), 4)
    optimizer = build_optimization(built.net, TrainConfig(weight_decay=0.1), built.head)["optimizer"]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(params) == 2 and all(p.requires_grad for p in params)


@pytest.mark.parametrize(
    "optimizer,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_optimizer_choice(optimizer, cls):
    built = _net()
    cfg = TrainConfig(optimizer=optimizer, weight_decay=1e-4, scheduler="step")
    result = build_optimization(built.net, cfg, built.head)
    assert isinstance(result["optimizer"], cls)
    assert result["optimizer"].param_groups[0]["weight_decay"] == 1e-4
    assert isinstance(result["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert result["lr_scheduler"]["interval"] == "epoch"
