"""Bottom-ups (timm with offline weights, ResNet) and the PANet bottom-up path."""
import logging

import pytest
import timm
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.fpn import FPN
from safetensors.torch import save_file
from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d

from detectron2_myeloma.modeling.panet_fpn import PANetFPN
from detectron2_myeloma.modeling.pretrained import packaged_weights_path, rename_by_order
from detectron2_myeloma.modeling.timm_backbone import build_timm_bottom_up

RGB = ShapeSpec(channels=3)


@pytest.mark.parametrize(
    "name, last_block",
    [("tf_efficientnet_lite0", "_blocks.15"), ("tf_efficientnet_lite2", "_blocks.20")],
)
def test_packaged_imagenet_weights_are_loaded(make_cfg, name, last_block):
    cfg = make_cfg({"MODEL.TIMM.NAME": name, "MODEL.TIMM.PRETRAINED": True})
    body = build_timm_bottom_up(cfg, RGB).body
    checkpoint = torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True)
    pairs = {
        "conv_stem.weight": "_conv_stem.weight",
        "bn1.running_var": "_bn0.running_var",
        "blocks.0.0.conv_dw.weight": "_blocks.0._depthwise_conv.weight",
        "blocks.6.0.conv_pwl.weight": f"{last_block}._project_conv.weight",
        "blocks.6.0.bn3.bias": f"{last_block}._bn2.bias",
    }
    state = body.state_dict()
    for ours, theirs in pairs.items():
        assert torch.equal(state[ours], checkpoint[theirs]), ours


def test_frozen_batchnorm_keeps_the_function_and_the_fused_activation(make_cfg):
    overrides = {"MODEL.TIMM.NAME": "tf_efficientnet_lite0", "MODEL.TIMM.PRETRAINED": True}
    frozen = build_timm_bottom_up(make_cfg(overrides), RGB)
    trainable = build_timm_bottom_up(make_cfg({**overrides, "MODEL.TIMM.NORM": "BN"}), RGB)
    assert isinstance(frozen.body.bn1, FrozenBatchNormAct2d)
    assert isinstance(frozen.body.bn1.act, torch.nn.ReLU6)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    # "BN": frozen stages (stem, stride-2 and stride-4 stages) frozen, the rest trainable.
    assert isinstance(trainable.body.blocks[1][0].bn1, FrozenBatchNormAct2d)
    assert isinstance(trainable.body.blocks[2][0].bn1, BatchNormAct2d)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours, reference = frozen(x), trainable.eval()(x)
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-4, atol=1e-4)


def test_freeze_at_freezes_stages_up_to_that_stride(make_cfg):
    body = build_timm_bottom_up(make_cfg({"MODEL.TIMM.FREEZE_AT": 2}), RGB).body
    trainable = {".".join(name.split(".")[:2]) for name, p in body.named_parameters() if p.requires_grad}
    assert not body.conv_stem.weight.requires_grad
    assert not any(p.requires_grad for p in body.blocks[1].parameters())
    assert all(p.requires_grad for p in body.blocks[2].parameters())
    assert trainable == {"blocks.2", "blocks.3", "blocks.4"}
    unfrozen = build_timm_bottom_up(make_cfg({"MODEL.TIMM.FREEZE_AT": 0}), RGB)
    assert all(p.requires_grad for p in unfrozen.parameters())
    # A FeatureListNet (flattened module names), here timm's ResNet: FREEZE_AT=2 is stem + layer1.
    resnet = build_timm_bottom_up(make_cfg({"MODEL.TIMM.NAME": "test_resnet"}), RGB)
    assert not any(p.requires_grad for p in resnet.body.conv1.parameters())
    assert not any(p.requires_grad for p in resnet.body.layer1.parameters())
    assert all(p.requires_grad for p in resnet.body.layer2.parameters())
    with pytest.raises(ValueError, match="FREEZE_AT=6"):
        build_timm_bottom_up(make_cfg({"MODEL.TIMM.FREEZE_AT": 6}), RGB)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_is_loaded_by_name_and_missing_weights_are_announced(make_cfg, tmp_path, caplog, suffix):
    torch.manual_seed(0)
    classifier = timm.create_model("test_efficientnet", pretrained=False)
    path = str(tmp_path / f"weights{suffix}")
    (save_file if suffix == ".safetensors" else torch.save)(classifier.state_dict(), path)
    cfg = make_cfg({"MODEL.TIMM.PRETRAINED": True, "MODEL.TIMM.WEIGHTS": path})
    body = build_timm_bottom_up(cfg, RGB).body
    assert torch.equal(body.blocks[4][0].conv_pwl.weight, classifier.blocks[4][0].conv_pwl.weight)

    with caplog.at_level(logging.WARNING):
        build_timm_bottom_up(make_cfg({"MODEL.TIMM.PRETRAINED": True}), RGB)
    assert "RANDOM" in caplog.text


def test_pairing_by_order_refuses_a_different_layout():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    checkpoint = {name: torch.zeros(8) for name in "abcdef"}
    checkpoint["a"] = torch.zeros(8, 3, 3, 3)
    checkpoint["f"] = torch.zeros(4)  # should be BatchNorm's running_var, (8,)
    with pytest.raises(ValueError, match="pairing failed"):
        rename_by_order(checkpoint, model)


def test_bottom_up_path_follows_panet(make_cfg):
    torch.manual_seed(0)
    backbone = build_backbone(make_cfg({"MODEL.RMASK.BOTTOM_UP_PATH": True}), RGB)
    assert isinstance(backbone, PANetFPN) and backbone.top_block is None
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = backbone(x)
        p = FPN.forward(backbone, x)  # the plain FPN outputs P2..P5
        assert list(p) == ["p2", "p3", "p4", "p5"]
        assert torch.equal(out["p2"], p["p2"])  # N2 = P2
        conv_s2, conv = backbone.pa_downsample3, backbone.pa_output3
        downsampled = F.relu(F.conv2d(p["p2"], conv_s2.weight, conv_s2.bias, stride=2, padding=1))
        n3 = F.relu(F.conv2d(downsampled + p["p3"], conv.weight, conv.bias, padding=1))
        torch.testing.assert_close(out["p3"], n3)
        assert torch.equal(out["p6"], F.max_pool2d(out["p5"], kernel_size=1, stride=2))  # p6 from N5
    shapes = backbone.output_shape()
    assert {k: s.stride for k, s in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    for name, feature in out.items():
        assert feature.shape[1] == shapes[name].channels
        assert feature.shape[-2:] == (-(-64 // shapes[name].stride), -(-96 // shapes[name].stride))


def test_resnet_bottom_up_variant(make_cfg):
    cfg = make_cfg(
        {
            "MODEL.BACKBONE.NAME": "build_resnet_rmask_fpn_backbone",
            "MODEL.RESNETS.DEPTH": 18,
            "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
            "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
            "MODEL.RMASK.BOTTOM_UP_PATH": True,
            "MODEL.RMASK.FPN_ATTENTION": "CA-SA",
            "MODEL.RMASK.BU_ATTENTION": "CA",
        }
    )
    backbone = build_backbone(cfg, RGB)
    assert type(backbone.bottom_up).__name__ == "ResNet"
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "p2": (32, 16, 16), "p3": (32, 8, 8), "p4": (32, 4, 4), "p5": (32, 2, 2), "p6": (32, 1, 1)
    }
