"""ROI heads of every detector here: Detectron2's standard heads under the precision policy, and the
hand-over of feature maps (and the input pixels) to a mask head that pools for itself."""
import bisect
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY, BaseMaskRCNNHead, build_mask_head
from detectron2.structures import ImageList, Instances

from ..utils.errors import InputError
from .precision import pooled_features, roi_heads_precision

IMAGE_FEATURE = "image"  # the input batch as a feature map, for heads that read the pixels themselves
IMAGE_SHAPE = ShapeSpec(channels=3, stride=1)


@ROI_HEADS_REGISTRY.register()
class RMaskROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with these differences:

    - with ``ROI_MASK_HEAD.POOLER_TYPE ""`` (Detectron2's convention for a mask head that pools for
      itself, as PointRend's) the head gets the feature maps its ``input_features(cfg)`` classmethod
      names, ``ROI_HEADS.IN_FEATURES`` where it has none; among them ``"image"`` is the model's
      normalised input batch (stride 1), which ``StandardROIHeads`` cannot hand over. With a pooler type
      the head is built exactly as ``StandardROIHeads`` builds it;
    - features are pooled in float32, and the heads run as :mod:`.precision` says;
    - at inference on CUDA, each image's detections reach the mask head padded to one of a few counts
      (``TEST.DETECTION_BUCKETS``), so that its kernels see few batch shapes.

    ``StandardROIHeads._forward_mask`` runs both kinds of mask head.
    """

    @configurable
    def __init__(self, *, detection_buckets: Sequence[int] = (), **kwargs):
        super().__init__(**kwargs)
        self.detection_buckets = sorted(detection_buckets)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        ret = super().from_config(cfg, input_shape)
        ret["detection_buckets"] = cfg.TEST.DETECTION_BUCKETS
        return ret

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """``StandardROIHeads.forward`` on float32 versions of the feature maps (plus ``"image"`` where the mask
        head reads it), under :func:`.precision.roi_heads_precision`.

        Args:
            images: the model's input batch; its (N, 3, H, W) float32 normalised tensor is the ``"image"`` map.
            features: the backbone's {name: (N, C, H / s, W / s)} maps of stride s, float32 or the autocast
                dtype.
            proposals: per image, the RPN's ``proposal_boxes`` ((P_i, 4) float32 XYXY in model-input pixels)
                and ``objectness_logits`` ((P_i,) float32 or the autocast dtype).
            targets: per image, in training only: ``gt_boxes``, ``gt_classes`` ((G_i,) int64), ``gt_masks`` and,
                for the nucleus, ``gt_nuclei``.

        Returns:
            Training: the sampled proposals and {name: 0-dim loss} of the box and mask heads. Inference: per
            image the detections (``pred_boxes`` (R_i, 4) XYXY, ``scores`` (R_i,), ``pred_masks``
            (R_i, 1, S, S) probabilities, all float32; ``pred_classes`` (R_i,) int64) and ``{}``.
        """
        features = self._head_inputs(images, features)
        with roi_heads_precision(next(iter(features.values())).device, self.training):
            return super().forward(images, features, proposals, targets)

    def masks_for_boxes(self, images: ImageList, features: Dict[str, torch.Tensor],
                        instances: List[Instances]) -> List[Instances]:
        """``forward_with_given_boxes`` (masks of given detections) under the same inputs and precision
        as ``forward``.

        Args:
            images, features: as ``forward`` takes them.
            instances: per image, ``pred_boxes`` ((R_i, 4) XYXY in model-input pixels) and ``pred_classes``
                ((R_i,) int64).

        Returns:
            Per image, the detections with ``pred_masks`` ((R_i, 1, S, S) float32 probabilities) and, with a
            nucleus, ``pred_nucleus_masks`` alike: ``instances`` themselves, or copies where
            :meth:`pads_detections`.
        """
        features = self._head_inputs(images, features)
        with roi_heads_precision(next(iter(features.values())).device, self.training):
            return self.forward_with_given_boxes(features, instances)

    def pads_detections(self, features: Dict[str, torch.Tensor]) -> bool:
        """Whether the mask head gets padded detections: inference on CUDA, with buckets configured.
        Only the device of the {name: (N, C, H, W)} ``features`` is read."""
        return (not self.training and bool(self.detection_buckets)
                and next(iter(features.values())).device.type == "cuda")

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        if not self.pads_detections(features):
            return super()._forward_mask(features, instances)
        counts = [len(x) for x in instances]
        padded = [padded_to_bucket(x, self.detection_buckets) for x in instances]
        return [x[:count] for x, count in zip(super()._forward_mask(features, padded), counts)]

    def _head_inputs(self, images: ImageList, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        features = pooled_features(features)
        if IMAGE_FEATURE in getattr(self, "mask_in_features", ()):
            features = {**features, IMAGE_FEATURE: images.tensor.float()}
        return features

    @classmethod
    def _init_mask_head(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        if not cfg.MODEL.MASK_ON:
            return {}
        mask = cfg.MODEL.ROI_MASK_HEAD
        head = ROI_MASK_HEAD_REGISTRY.get(mask.NAME)
        if mask.NUCLEUS and not getattr(head, "predicts_nucleus", False):
            raise InputError(f"MODEL.ROI_MASK_HEAD.NUCLEUS needs a mask head that predicts it "
                             f"(AdaptiveFusionMaskHead, PointRefinedMaskHead), not {mask.NAME}")
        if mask.POOLER_TYPE:
            return super()._init_mask_head(cfg, input_shape)
        input_features = getattr(head, "input_features", None)
        if input_features is None and isinstance(head, type) and issubclass(head, BaseMaskRCNNHead):
            raise InputError(f'MODEL.ROI_MASK_HEAD.POOLER_TYPE "": {mask.NAME} reads pooled features and '
                             'does not pool for itself; give it a pooler type ("ROIAlignV2")')
        in_features = input_features(cfg) if input_features is not None else list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        shapes = {f: IMAGE_SHAPE if f == IMAGE_FEATURE else input_shape[f] for f in in_features
                  if f == IMAGE_FEATURE or f in input_shape}  # the head names any that is missing
        return {"mask_in_features": in_features, "mask_pooler": None, "mask_head": build_mask_head(cfg, shapes)}


def padded_to_bucket(instances: Instances, buckets: Sequence[int]) -> Instances:
    """``instances`` with copies of its first detection appended, up to the smallest of the sorted
    ``buckets`` that holds them all; unchanged when none does, or when there is nothing to copy. Every
    field's first dimension grows to the bucket; ``pred_classes`` must be there (its device is used)."""
    index = bisect.bisect_left(buckets, len(instances))
    if len(instances) == 0 or index == len(buckets) or buckets[index] == len(instances):
        return instances
    return Instances.cat([instances, instances[torch.zeros(buckets[index] - len(instances), dtype=torch.long,
                                                           device=instances.pred_classes.device)]])
