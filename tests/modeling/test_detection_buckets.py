"""Detections padded to a few counts before the mask head (TEST.DETECTION_BUCKETS, CUDA only): the
head sees only bucket sizes, and every real detection gets the mask it gets unpadded."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from detectron2_myeloma.modeling.roi_heads import padded_to_bucket
from detector_testutils import POINT_HEAD

POINT_NUCLEUS = {**POINT_HEAD, "MODEL.ROI_MASK_HEAD.NUCLEUS": True,
                 "MODEL.ROI_MASK_HEAD.POINT_REFINE.FC_DIM": 16,
                 "MODEL.ROI_MASK_HEAD.POINT_REFINE.SUBDIVISION_NUM_POINTS": 200}


def detections(n: int) -> Instances:
    instances = Instances((100, 100))
    instances.pred_boxes = Boxes(torch.arange(4 * n, dtype=torch.float32).view(n, 4))
    instances.pred_classes = torch.arange(n)
    return instances


@pytest.mark.parametrize("n,expected", [(0, 0), (1, 4), (4, 4), (5, 8), (8, 8), (9, 9)])
def test_padding_reaches_the_next_bucket_with_copies_of_the_first(n, expected):
    padded = padded_to_bucket(detections(n), [4, 8])
    assert len(padded) == expected
    assert padded.pred_classes[:n].tolist() == list(range(n))
    assert padded.pred_classes[n:].tolist() == [0] * (expected - n)


@pytest.mark.parametrize("overrides", [{}, POINT_NUCLEUS])
def test_padded_mask_head_gives_each_detection_its_own_mask(make_cfg, batch, overrides):
    cfg = make_cfg({**overrides, "TEST.DETECTION_BUCKETS": (16, 32), "TEST.DETECTIONS_PER_IMAGE": 7})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    for item in batch:
        del item["instances"]
    with torch.no_grad():
        plain = model(batch)
        seen = []
        model.roi_heads.mask_head.register_forward_pre_hook(
            lambda module, args: seen.append([len(x) for x in args[-1]]))
        model.roi_heads.pads_detections = lambda features: True  # as on CUDA
        padded = model(batch)
    assert seen == [[16, 16]]
    for a, b in zip(plain, padded):
        a, b = a["instances"], b["instances"]
        assert len(a) == len(b) == 7
        for name in ("pred_masks", "pred_nucleus_masks"):
            if a.has(name):
                assert torch.equal(a.get(name), b.get(name)), name
