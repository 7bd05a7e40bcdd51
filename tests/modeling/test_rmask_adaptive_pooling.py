"""PANet adaptive feature pooling in the mask head."""
import pytest
import torch
from detectron2.layers import ROIAlign
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from detectron2_myeloma.modeling.adaptive_pooling import (
    AdaptiveFusionMaskHead,
    AllLevelsROIPooler,
    LevelFusionConv,
)
from detector_testutils import ADAPTIVE_HEAD



def test_every_box_is_pooled_from_every_level():
    torch.manual_seed(0)
    features = [torch.randn(2, 4, 32 // 2**i, 40 // 2**i) for i in range(4)]
    image0 = Boxes(torch.tensor([[4.0, 4, 60, 50], [10, 10, 20, 30]]))
    boxes = [image0, Boxes(torch.tensor([[0.0, 0, 90, 60]]))]
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    pooler = AllLevelsROIPooler(output_size=7, scales=scales, sampling_ratio=0, pooler_type="ROIAlignV2")
    pooled = pooler(features, boxes)
    assert pooled.shape == (3, 4, 4, 7, 7)
    rois = torch.tensor([[0.0, 4, 4, 60, 50], [0, 10, 10, 20, 30], [1, 0, 0, 90, 60]])
    for level, feature in enumerate(features):
        align = ROIAlign(7, spatial_scale=scales[level], sampling_ratio=0, aligned=True)
        torch.testing.assert_close(pooled[:, level], align(feature, rois))


@pytest.mark.parametrize("fusion", ["max", "sum"])
def test_levels_are_fused_after_one_conv_each(fusion):
    torch.manual_seed(0)
    fuse = LevelFusionConv(num_levels=3, in_channels=4, out_channels=6, fusion=fusion)
    x = torch.randn(5, 3, 4, 7, 7)
    per_level = torch.stack([conv(x[:, i]) for i, conv in enumerate(fuse.convs)])
    expected = per_level.amax(0) if fusion == "max" else per_level.sum(0)
    torch.testing.assert_close(fuse(x), expected)
    assert not torch.equal(fuse.convs[0].weight, fuse.convs[1].weight)  # own weights per level


@pytest.mark.parametrize("fusion", ["max", "sum"])
def test_adaptive_mask_head_predicts_masks(make_cfg, batch, fusion):
    model = build_model(make_cfg({**ADAPTIVE_HEAD, "MODEL.RMASK.ADAPTIVE_FUSION": fusion}))
    head = model.roi_heads.mask_head
    assert isinstance(head, AdaptiveFusionMaskHead)
    layers = [name for name, _ in head.named_children()]
    assert layers == ["mask_fcn1", "mask_fcn2", "deconv", "deconv_relu", "predictor", "pooler"]
    assert isinstance(head.pooler, AllLevelsROIPooler) and model.roi_heads.mask_pooler is None
    assert isinstance(head.mask_fcn1, LevelFusionConv) and head.mask_fcn1.fusion == fusion
    model.eval()
    with torch.no_grad():
        results = model(batch)
    instances = results[0]["instances"]
    assert len(instances) > 0 and instances.pred_masks.shape[1:] == (128, 160)


def test_adaptive_mask_head_handles_images_without_detections_or_objects(make_cfg, batch):
    model = build_model(make_cfg({**ADAPTIVE_HEAD, "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 1.0}))
    model.eval()
    with torch.no_grad():
        assert len(model(batch)[0]["instances"]) == 0
    for item in batch:
        item["instances"] = item["instances"][:0]
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert losses["loss_mask"] == 0
    sum(losses.values()).backward()


@pytest.mark.parametrize("pooler_type, aligned", [("ROIAlignV2", True), ("ROIAlign", False)])
def test_the_head_pools_with_its_own_pooler_type(make_cfg, pooler_type, aligned):
    """POOLER_TYPE "" leaves Detectron2's ROI heads without a pooler; RMASK.ADAPTIVE_POOLER_TYPE is the head's."""
    model = build_model(make_cfg({**ADAPTIVE_HEAD, "MODEL.RMASK.ADAPTIVE_POOLER_TYPE": pooler_type}))
    assert model.roi_heads.mask_pooler is None
    assert [p.aligned for p in model.roi_heads.mask_head.pooler.level_poolers] == [aligned] * 4

