"""ROI heads of every detector here: Detectron2's standard heads under the precision policy, and the
hand-over of feature maps to a mask head that pools for itself."""
from typing import Any, Dict

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY, build_mask_head

from .precision import pooled_features, roi_heads_precision


@ROI_HEADS_REGISTRY.register()
class RMaskROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with two differences:

    - a mask head whose class sets ``pools_features = True`` (the adaptive pooling head,
      :mod:`.adaptive_pooling`) gets the feature maps of ``ROI_HEADS.IN_FEATURES`` and no pooler, so
      ``ROI_MASK_HEAD.NAME`` alone picks it; any other head is built exactly as ``StandardROIHeads``
      builds it;
    - features are pooled in float32, and the heads run as :mod:`.precision` says.

    ``StandardROIHeads._forward_mask`` runs both kinds of mask head.
    """

    def forward(self, images, features, proposals, targets=None):
        features = pooled_features(features)
        with roi_heads_precision(next(iter(features.values())).device, self.training):
            return super().forward(images, features, proposals, targets)

    @classmethod
    def _init_mask_head(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        head = ROI_MASK_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASK_HEAD.NAME) if cfg.MODEL.MASK_ON else None
        if not getattr(head, "pools_features", False):
            return super()._init_mask_head(cfg, input_shape)
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        return {"mask_in_features": in_features, "mask_pooler": None,
                "mask_head": build_mask_head(cfg, {f: input_shape[f] for f in in_features})}
