"""A tiny R-Mask R-CNN and a synthetic 2-image batch, shared by the modeling tests (through their conftest's
fixtures) and the cell-classifier hook tests: the detector suites run in seconds on CPU."""
from typing import Any, Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from torch import nn

from detectron2_myeloma.config import add_myeloma_config  # importing the package registers the components

HEIGHT, WIDTH = 128, 160
# The project's mask heads pool for themselves: Detectron2's POOLER_TYPE "" goes with their names.
ADAPTIVE_HEAD = {"MODEL.ROI_MASK_HEAD.NAME": "AdaptiveFusionMaskHead", "MODEL.ROI_MASK_HEAD.POOLER_TYPE": ""}
POINT_HEAD = {"MODEL.ROI_MASK_HEAD.NAME": "PointRefinedMaskHead", "MODEL.ROI_MASK_HEAD.POOLER_TYPE": ""}


def tiny_cfg(overrides: Optional[Dict[str, Any]] = None) -> CfgNode:
    """R-Mask R-CNN on timm's 82k-parameter ``test_efficientnet`` (random weights), everything small,
    float32, every ``MODEL.RMASK`` switch off unless ``overrides`` ({"MODEL.RMASK.X": value}) says otherwise."""
    cfg = get_cfg()
    add_myeloma_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.SOLVER.AMP.ENABLED = cfg.TEST.AMP.ENABLED = False  # the same dtypes on every CPU; tests opt in
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNNWithPostHooks"
    cfg.MODEL.BACKBONE.NAME = "build_timm_rmask_fpn_backbone"
    cfg.MODEL.TIMM.NAME = "test_efficientnet"
    cfg.MODEL.TIMM.PRETRAINED = False
    cfg.MODEL.PIXEL_MEAN = [127.5] * 3
    cfg.MODEL.PIXEL_STD = [127.5] * 3
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RMASK.CA_REDUCTION = 2  # 16 hidden units: some stay alive after ReLU
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 8192  # every anchor, so every level (p5, p6 too) gets a gradient
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.ROI_HEADS.NAME = "RMaskROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 2
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    cfg.merge_from_list([item for key_value in (overrides or {}).items() for item in key_value])
    return cfg


def synthetic_batch() -> List[Dict[str, Any]]:
    """Two random 128x160 RGB images, each with two boxes (classes 0 and 1) filled by their masks."""
    generator = torch.Generator().manual_seed(0)
    batch = []
    for shift in (0, 8):
        boxes = torch.tensor([[10.0, 20, 60, 70], [70, 30, 150, 110]]) + shift
        masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            mask[y0:y1, x0:x1] = True
        instances = Instances((HEIGHT, WIDTH))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.tensor([0, 1])
        instances.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=generator).float()
        batch.append({"image": image, "instances": instances, "height": HEIGHT, "width": WIDTH})
    return batch


def cpu_and_cuda_twins(cfg_cpu: CfgNode, cfg_cuda: CfgNode) -> Tuple[nn.Module, nn.Module]:
    """The models of both configs in eval mode, with the same (seeded) weights."""
    torch.manual_seed(0)
    cpu = build_model(cfg_cpu).eval()
    cuda = build_model(cfg_cuda).eval()
    cuda.load_state_dict(cpu.state_dict())
    return cpu, cuda
