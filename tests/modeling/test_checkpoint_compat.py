"""Models trained before the registry redesign (commit ad4a39f: meta-architecture "RMaskRCNN",
MODEL.RMASK.MASK_POOLING "adaptive", MODEL.CELL_CLASSIFIER.ENABLED) keep working.

``data/rmask_tiny_ad4a39f.pth`` was written by that commit: the conftest's tiny model with every R-Mask
R-CNN part on, its weights (Detectron2 checkpoint layout) and its outputs on :func:`synthetic_batch`.
"""
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from detectron2_myeloma.modeling import AdaptiveFusionMaskHead
from detector_testutils import ADAPTIVE_HEAD

OLD_CHECKPOINT = os.path.join(os.path.dirname(__file__), "data", "rmask_tiny_ad4a39f.pth")
EVERYTHING_ON = {"MODEL.RMASK.BOTTOM_UP_PATH": True, "MODEL.RMASK.FPN_ATTENTION": "CA-SA",
                 "MODEL.RMASK.BU_ATTENTION": "CA-SA", **ADAPTIVE_HEAD,
                 "MODEL.FPN.OUT_CHANNELS": 16, "MODEL.ROI_BOX_HEAD.FC_DIM": 16, "MODEL.ROI_MASK_HEAD.CONV_DIM": 8}


def test_checkpoint_of_the_old_names_loads_and_predicts_the_same(make_cfg, batch):
    model = build_model(make_cfg(EVERYTHING_ON)).eval()
    assert isinstance(model.roi_heads.mask_head, AdaptiveFusionMaskHead)
    checkpoint = torch.load(OLD_CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(checkpoint["model"])  # no key renamed, none missing
    DetectionCheckpointer(model).load(OLD_CHECKPOINT)  # as train_net / predict load MODEL.WEIGHTS
    with torch.no_grad():
        outputs = model(batch)
    for output, expected in zip(outputs, checkpoint["expected"]):
        instances = output["instances"]
        assert torch.equal(instances.pred_classes, expected["classes"])
        torch.testing.assert_close(instances.pred_boxes.tensor, expected["boxes"])
        torch.testing.assert_close(instances.scores, expected["scores"])
        torch.testing.assert_close(instances.pred_masks.sum((1, 2)), expected["mask_areas"])


@pytest.mark.parametrize("key, value, new_key", [
    ("MODEL.RMASK.MASK_POOLING", "adaptive", "MODEL.ROI_MASK_HEAD.NAME"),
    ("MODEL.CELL_CLASSIFIER.ENABLED", True, "MODEL.POST_HOOKS"),
])
def test_old_config_keys_name_their_replacement(make_cfg, key, value, new_key):
    with pytest.raises(KeyError, match=new_key):
        make_cfg({key: value})
