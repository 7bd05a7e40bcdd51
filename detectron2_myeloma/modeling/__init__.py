"""R-Mask R-CNN: Mask R-CNN with a timm/ResNet bottom-up, PANet's bottom-up path, channel/spatial
attention and adaptive mask pooling, and the cell classifier that labels its detections afterwards.
Importing this package registers its Detectron2 components."""
from .backbone import build_resnet_rmask_fpn_backbone, build_rmask_fpn, build_timm_rmask_fpn_backbone
from .cell_classifier_hook import CellClassifierHook
from .meta_arch import PostHook, RMaskRCNN
from .roi_heads import RMaskROIHeads

__all__ = [
    "build_resnet_rmask_fpn_backbone",
    "build_rmask_fpn",
    "build_timm_rmask_fpn_backbone",
    "CellClassifierHook",
    "PostHook",
    "RMaskRCNN",
    "RMaskROIHeads",
]
