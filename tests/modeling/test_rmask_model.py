"""Whole R-Mask R-CNN models: every switch trains, every new parameter learns, all off = Mask R-CNN."""
import itertools

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import GeneralizedRCNN, StandardROIHeads, build_model
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.utils.events import EventStorage

from detectron2_myeloma.modeling import GeneralizedRCNNWithPostHooks
from detectron2_myeloma.modeling.adaptive_pooling import AllLevelsROIPooler
from detectron2_myeloma.modeling.attention import ChannelAttention, SpatialAttention
from detectron2_myeloma.modeling.panet_fpn import PANetFPN
from detectron2_myeloma.modeling.timm_backbone import build_timm_bottom_up
from testutils import detection_pairs
from detector_testutils import ADAPTIVE_HEAD

ORDERS = ["CA", "SA", "CA-SA", "SA-CA"]
GATES = ["sigmoid", "softmax"]
PLACES = {  # where attention goes -> (BOTTOM_UP_PATH, FPN_ATTENTION?, BU_ATTENTION?)
    "fpn": (False, True, False),
    "bu": (True, False, True),
    "both": (True, True, True),
}


def attention_overrides(order, gate, place):
    path, on_fpn, on_bu = PLACES[place]
    return {
        "MODEL.RMASK.BOTTOM_UP_PATH": path,
        "MODEL.RMASK.FPN_ATTENTION": order if on_fpn else "NONE",
        "MODEL.RMASK.BU_ATTENTION": order if on_bu else "NONE",
        "MODEL.RMASK.ATTENTION_GATE": gate,
        "MODEL.RMASK.CA_USE_MAX_POOL": place == "both",
    }


MODES = [
    pytest.param(attention_overrides(order, gate, place), id=f"{order}-{gate}-{place}")
    for order, gate, place in itertools.product(ORDERS, GATES, PLACES)
] + [
    pytest.param({}, id="all-off"),
    pytest.param({"MODEL.RMASK.BOTTOM_UP_PATH": True}, id="bottom-up-path-only"),
    pytest.param({**ADAPTIVE_HEAD, "MODEL.RMASK.ADAPTIVE_FUSION": "max"}, id="adaptive-max"),
    pytest.param({**ADAPTIVE_HEAD, "MODEL.RMASK.ADAPTIVE_FUSION": "sum"}, id="adaptive-sum"),
    pytest.param({**attention_overrides("CA-SA", "softmax", "both"), **ADAPTIVE_HEAD}, id="everything-on"),
]


@pytest.mark.parametrize("overrides", MODES)
def test_every_mode_trains_and_every_new_parameter_gets_a_gradient(make_cfg, batch, overrides):
    torch.manual_seed(0)
    model = build_model(make_cfg(overrides))
    plain_names = set(build_model(make_cfg()).state_dict())
    new = {name: p for name, p in model.named_parameters() if name not in plain_names}
    assert bool(new) == bool(overrides)
    # The near-identity initialisation zeroes the last attention conv, which blocks the gradient to
    # the convs before it at iteration 0; move every new parameter off its initial value first.
    with torch.no_grad():
        for p in new.values():
            p.add_(0.1 * torch.randn_like(p))

    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    no_grad = [name for name, p in new.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad


def test_switches_build_the_intended_modules(make_cfg):
    model = build_model(make_cfg({**attention_overrides("SA-CA", "sigmoid", "both"), **ADAPTIVE_HEAD}))
    backbone = model.backbone
    assert isinstance(model, GeneralizedRCNNWithPostHooks) and isinstance(backbone, PANetFPN)
    assert list(dict(backbone.fpn_attention["p3"].named_children())) == ["sa", "ca"]
    assert isinstance(backbone.bu_attention["p5"].ca, ChannelAttention)
    assert isinstance(backbone.bu_attention["p5"].sa, SpatialAttention)
    assert [name for name, _ in backbone.named_children() if name.startswith("pa_")] == [
        "pa_downsample3", "pa_output3", "pa_downsample4", "pa_output4", "pa_downsample5", "pa_output5",
    ]  # fmt: skip
    assert isinstance(model.roi_heads.mask_head.pooler, AllLevelsROIPooler)
    assert len(model.roi_heads.mask_head.mask_fcn1.convs) == 4
    assert set(backbone.output_shape()) == {"p2", "p3", "p4", "p5", "p6"}


def plain_mask_rcnn(cfg):
    """Detectron2's own Mask R-CNN parts on the same timm bottom-up, without this project's builders."""
    backbone = FPN(
        bottom_up=build_timm_bottom_up(cfg, ShapeSpec(channels=3)),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        top_block=LastLevelMaxPool(),
    )
    shapes = backbone.output_shape()
    return GeneralizedRCNN(
        backbone=backbone,
        proposal_generator=build_proposal_generator(cfg, shapes),
        roi_heads=StandardROIHeads(cfg, shapes),
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
        input_format=cfg.INPUT.FORMAT,
    )


def test_all_switches_off_is_plain_mask_rcnn(make_cfg, batch):
    cfg = make_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    plain = plain_mask_rcnn(cfg)
    assert type(model.backbone) is FPN
    shapes = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    assert shapes == [(name, tuple(t.shape)) for name, t in plain.state_dict().items()]
    assert [name for name, _ in model.named_modules()] == [name for name, _ in plain.named_modules()]

    plain.load_state_dict(model.state_dict())
    for a, b in detection_pairs(model, plain, batch):
        assert len(a) > 0
        for field in ("pred_boxes", "scores", "pred_classes", "pred_masks"):
            x, y = a.get(field), b.get(field)
            x, y = (x.tensor, y.tensor) if field == "pred_boxes" else (x, y)
            assert torch.equal(x, y), field


def test_post_hooks_run_in_order_after_postprocess_in_inference_only(make_cfg, batch):
    calls = []

    def tag(name):
        def hook(batched_inputs, results):
            calls.append(name)
            assert len(batched_inputs) == len(results) and results[0]["instances"].image_size == (128, 160)
            return [{**r, "tags": r.get("tags", []) + [name]} for r in results]

        return hook

    model = build_model(make_cfg())
    model.add_post_hook(tag("first"))
    model.add_post_hook(tag("second"))
    model.eval()
    with torch.no_grad():
        results = model(batch)
        assert [r["tags"] for r in results] == [["first", "second"]] * 2
        raw = model.inference(batch, do_postprocess=False)
    assert calls == ["first", "second"] and len(raw) == 2
    model.train()
    with EventStorage(0):
        model(batch)
    assert calls == ["first", "second"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"MODEL.RMASK.BU_ATTENTION": "CA"}, "bottom-up path"),
        ({"MODEL.RMASK.FPN_ATTENTION": "CBAM"}, "attention order"),
        ({"MODEL.RMASK.FPN_ATTENTION": "CA", "MODEL.RMASK.ATTENTION_GATE": "tanh"}, "attention gate"),
        ({**ADAPTIVE_HEAD, "MODEL.RMASK.ADAPTIVE_FUSION": "mean"}, "ADAPTIVE_FUSION"),
    ],
)
def test_bad_settings_fail_at_build_time(make_cfg, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(make_cfg(overrides))
