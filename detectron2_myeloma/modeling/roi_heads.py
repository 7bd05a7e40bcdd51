"""ROI heads of R-Mask R-CNN: Detectron2's standard heads, optionally with adaptive mask pooling."""
from typing import Any, Dict

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

from .adaptive_pooling import AdaptiveFusionMaskHead, AllLevelsROIPooler
from .precision import pooled_features, roi_heads_precision

MASK_POOLINGS = ("standard", "adaptive")


@ROI_HEADS_REGISTRY.register()
class RMaskROIHeads(StandardROIHeads):
    """``StandardROIHeads`` whose mask branch follows ``MODEL.RMASK.MASK_POOLING``:

    - "standard": exactly ``StandardROIHeads`` (one level per RoI, ``ROI_MASK_HEAD.NAME`` head);
    - "adaptive": PANet's adaptive feature pooling (:mod:`.adaptive_pooling`), every RoI pooled from
      all ``ROI_HEADS.IN_FEATURES``, fused by ``MODEL.RMASK.ADAPTIVE_FUSION`` after the first conv.

    Only the mask branch's construction differs; ``StandardROIHeads._forward_mask`` runs both.
    Features are pooled in float32, and the heads run as :mod:`.precision` says.
    """

    def forward(self, images, features, proposals, targets=None):
        features = pooled_features(features)
        with roi_heads_precision(next(iter(features.values())).device, self.training):
            return super().forward(images, features, proposals, targets)

    @classmethod
    def _init_mask_head(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        pooling = cfg.MODEL.RMASK.MASK_POOLING
        if pooling not in MASK_POOLINGS:
            raise ValueError(f"MODEL.RMASK.MASK_POOLING={pooling!r}: expected one of {MASK_POOLINGS}")
        if pooling == "standard" or not cfg.MODEL.MASK_ON:
            return super()._init_mask_head(cfg, input_shape)
        if cfg.MODEL.ROI_MASK_HEAD.NAME != "MaskRCNNConvUpsampleHead":
            raise ValueError(
                "adaptive mask pooling extends MaskRCNNConvUpsampleHead: set ROI_MASK_HEAD.NAME to it"
            )
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        pooler = AllLevelsROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[f].stride for f in in_features),
            sampling_ratio=cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE,
        )
        channels = input_shape[in_features[0]].channels
        head = AdaptiveFusionMaskHead(cfg, ShapeSpec(channels=channels, height=resolution, width=resolution))
        return {"mask_in_features": in_features, "mask_pooler": pooler, "mask_head": head}
