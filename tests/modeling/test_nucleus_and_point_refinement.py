"""Each instance's nucleus (MODEL.ROI_MASK_HEAD.NUCLEUS) and the point refinement head: trained by
their losses, switched off = the model as it was, outputs at every resolution inside their cells."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances
from detectron2.utils.events import EventStorage

from detectron2_myeloma.modeling import AdaptiveFusionMaskHead, PointRefinedMaskHead
from detectron2_myeloma.structures import NUCLEUS_CROPS, NUCLEUS_MASKS
from detector_testutils import ADAPTIVE_HEAD, POINT_HEAD

POINT = {**POINT_HEAD, "MODEL.ROI_MASK_HEAD.POINT_REFINE.FC_DIM": 16,
         "MODEL.ROI_MASK_HEAD.POINT_REFINE.SUBDIVISION_NUM_POINTS": 200}
NUCLEUS = {"MODEL.ROI_MASK_HEAD.NUCLEUS": True}


def with_nuclei(batch):
    """Each synthetic box's nucleus: the middle third of its mask."""
    for item in batch:
        masks = item["instances"].gt_masks.tensor
        nuclei = torch.zeros_like(masks)
        for nucleus, box in zip(nuclei, item["instances"].gt_boxes.tensor.int().tolist()):
            x0, y0, x1, y1 = box
            w, h = x1 - x0, y1 - y0
            nucleus[y0 + h // 3:y1 - h // 3, x0 + w // 3:x1 - w // 3] = True
        item["instances"].gt_nuclei = BitMasks(nuclei)
    return batch


def seeded_model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def test_switches_off_build_the_adaptive_head_as_it_was(make_cfg):
    """No new parameter without the nucleus (so a checkpoint of before loads strictly), and the same
    weights for the same seed."""
    model = seeded_model(make_cfg(ADAPTIVE_HEAD))
    names = [name for name, _ in model.roi_heads.mask_head.named_children()]
    assert names == ["mask_fcn1", "mask_fcn2", "deconv", "deconv_relu", "predictor", "pooler"]
    with_nucleus = seeded_model(make_cfg({**ADAPTIVE_HEAD, **NUCLEUS}))
    extra = set(with_nucleus.state_dict()) - set(model.state_dict())
    assert extra == {"roi_heads.mask_head.nucleus_predictor.weight", "roi_heads.mask_head.nucleus_predictor.bias"}
    for name, value in model.state_dict().items():  # the nucleus predictor is drawn after the rest
        assert torch.equal(value, with_nucleus.state_dict()[name]), name


def test_point_head_without_subdivision_predicts_what_the_adaptive_head_predicts(make_cfg, batch):
    adaptive = seeded_model(make_cfg(ADAPTIVE_HEAD)).eval()
    point = build_model(make_cfg({**POINT, "MODEL.ROI_MASK_HEAD.POINT_REFINE.SUBDIVISION_STEPS": 0})).eval()
    missing = point.load_state_dict(adaptive.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("roi_heads.mask_head.point_head.") for k in missing)
    with torch.no_grad():
        expected, got = adaptive(batch)[0]["instances"], point(batch)[0]["instances"]
    assert len(expected) > 0
    assert torch.equal(expected.pred_masks, got.pred_masks)
    # With subdivision the masks are re-predicted at 112 x 112 and differ at the outline only.
    point.roi_heads.mask_head.subdivision_steps = 2
    with torch.no_grad():
        raw = point.inference(batch, do_postprocess=False)[0]
        refined = point(batch)[0]["instances"]
    assert raw.pred_masks.shape[-2:] == (112, 112)
    assert not torch.equal(refined.pred_masks, expected.pred_masks)


def test_given_boxes_get_the_masks_of_a_full_pass(make_cfg, batch):
    """``inference(detected_instances=...)`` hands the point head its inputs (the pixels among them) as a
    full pass does: the same boxes get the same masks and nuclei."""
    model = seeded_model(make_cfg({**POINT, **NUCLEUS})).eval()
    with torch.no_grad():
        full = model.inference(batch, do_postprocess=False)
        boxes = [Instances(x.image_size, pred_boxes=x.pred_boxes, pred_classes=x.pred_classes) for x in full]
        given = model.inference(batch, detected_instances=boxes, do_postprocess=False)
    assert sum(len(x) for x in full) > 0
    for expected, got in zip(full, given):
        torch.testing.assert_close(got.pred_masks, expected.pred_masks)
        torch.testing.assert_close(got.get(NUCLEUS_MASKS), expected.get(NUCLEUS_MASKS))


@pytest.mark.parametrize("head", [ADAPTIVE_HEAD, POINT])
def test_nucleus_and_point_losses_train_their_own_parameters(make_cfg, batch, head):
    model = seeded_model(make_cfg({**head, **NUCLEUS}))
    with torch.no_grad():  # away from the start's logits of 0, where every target costs log 2
        model.roi_heads.mask_head.nucleus_predictor.bias.fill_(2.0)
    model.train()
    with EventStorage(0):
        losses = model(with_nuclei(batch))
    expected = {"loss_mask", "loss_nucleus"} | ({"loss_mask_point"} if head is POINT else set())
    assert expected <= set(losses) and all(torch.isfinite(losses[k]) for k in expected)
    losses["loss_nucleus"].backward(retain_graph=head is POINT)
    mask_head = model.roi_heads.mask_head
    assert mask_head.nucleus_predictor.weight.grad.abs().sum() > 0
    if head is POINT:
        losses["loss_mask_point"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mask_head.point_head.parameters())
    # The nucleus targets are read: other nuclei give another loss.
    for item in batch:
        item["instances"].gt_nuclei = BitMasks(torch.zeros_like(item["instances"].gt_masks.tensor))
    with EventStorage(0):
        other = model(batch)["loss_nucleus"]
    assert not torch.isclose(other, losses["loss_nucleus"])


@pytest.mark.parametrize("head", [ADAPTIVE_HEAD, POINT])
def test_predicted_nuclei_lie_inside_their_cells(make_cfg, batch, head):
    model = seeded_model(make_cfg({**head, **NUCLEUS}))
    mask_head = model.roi_heads.mask_head
    with torch.no_grad():  # a nucleus predictor that says "nucleus" everywhere: the nucleus is the cell
        mask_head.nucleus_predictor.bias.fill_(5.0)
    model.eval()
    with torch.no_grad():
        full = model(batch)[0]["instances"]
        crops = model([{**batch[0], "mask_crops": True}])[0]["instances"]
    assert len(full) > 0 and full.get(NUCLEUS_MASKS).shape == full.pred_masks.shape
    assert torch.equal(full.get(NUCLEUS_MASKS), full.pred_masks)
    for cell, nucleus in zip(crops.pred_mask_crops, crops.get(NUCLEUS_CROPS)):
        assert nucleus.area == cell.overlap(nucleus) == cell.area
    with torch.no_grad():
        mask_head.nucleus_predictor.bias.fill_(-5.0)
        none = model(batch)[0]["instances"]
    assert not none.get(NUCLEUS_MASKS).any()


def test_nucleus_needs_a_head_that_predicts_it(make_cfg):
    with pytest.raises(ValueError, match="NUCLEUS needs a mask head that predicts it .* not MaskRCNNConvUpsampleHead"):
        build_model(make_cfg(NUCLEUS))


def test_point_refinement_must_see_something(make_cfg):
    with pytest.raises(ValueError, match="no feature map"):
        build_model(make_cfg({**POINT, "MODEL.ROI_MASK_HEAD.POINT_REFINE.IN_FEATURES": ("p9",)}))
    with pytest.raises(ValueError, match="points would see nothing"):
        build_model(make_cfg({**POINT, "MODEL.ROI_MASK_HEAD.POINT_REFINE.IN_FEATURES": (),
                              "MODEL.ROI_MASK_HEAD.POINT_REFINE.IMAGE": False}))


def test_heads_are_registered_classes():
    assert issubclass(PointRefinedMaskHead, AdaptiveFusionMaskHead)
