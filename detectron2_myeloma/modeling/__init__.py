"""R-Mask R-CNN: Mask R-CNN with a timm/ResNet bottom-up, PANet's bottom-up path, channel/spatial
attention and adaptive mask pooling, and the post-hooks that refine its detections afterwards.
Importing this package registers its Detectron2 components."""
from .backbone import build_resnet_rmask_fpn_backbone, build_rmask_fpn, build_timm_rmask_fpn_backbone
from .adaptive_pooling import AdaptiveFusionMaskHead
from .meta_arch import GeneralizedRCNNWithPostHooks
from .point_refinement import PointRefinedMaskHead
from .post_hooks import POST_HOOK_REGISTRY, PostHook, build_post_hooks
from .roi_heads import RMaskROIHeads

__all__ = [
    "AdaptiveFusionMaskHead",
    "build_resnet_rmask_fpn_backbone",
    "build_rmask_fpn",
    "build_timm_rmask_fpn_backbone",
    "GeneralizedRCNNWithPostHooks",
    "PointRefinedMaskHead",
    "POST_HOOK_REGISTRY",
    "PostHook",
    "build_post_hooks",
    "RMaskROIHeads",
]
