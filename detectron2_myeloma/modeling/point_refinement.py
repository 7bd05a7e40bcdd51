"""Boundary refinement of the cell masks at points, from fine features and the input's own pixels.

Today's mask head predicts 28x28 logits per cell, from features pooled at 14x14: at the model scale of an
80 px cell each logit covers about 3x3 input pixels, and the pooled features see the cell's edge more
coarsely still. ``PointRefinedMaskHead`` keeps that head as the coarse stage and adds a small point MLP
(PointRend, Kirillov et al. 2020): at inference the coarse logits are upsampled 2x per step and the
``SUBDIVISION_NUM_POINTS`` most uncertain of them (closest to 0, in the cell or the nucleus channel)
are predicted again from what lies exactly at that point: the fine feature maps of
``POINT_REFINE.IN_FEATURES`` (P2, stride 4) sampled bilinearly, the model input's pixels there (stride
1) and the coarse logits. In training, the MLP learns at points drawn mostly where the coarse mask is
uncertain, against the ground truth sampled at the same points.

Point sampling uses Detectron2's PointRend helpers (``detectron2.projects.point_rend.point_features``);
the head, its inputs and its nucleus channel are this project's.
"""
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY
from detectron2.projects.point_rend.point_features import (
    get_point_coords_wrt_image,
    get_uncertain_point_coords_on_grid,
    get_uncertain_point_coords_with_randomness,
    point_sample,
    point_sample_fine_grained_features,
)
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from .adaptive_pooling import AdaptiveFusionMaskHead
from ..structures import NUCLEUS_MASKS
from .roi_heads import IMAGE_FEATURE


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """(R, K, ...) logits -> (R, 1, ...) in their dtype: highest where some channel (cell, nucleus) is
    closest to 0. K = 1 (cell) or 2 (cell, nucleus); "..." is a grid's (H, W) or (P,) at P points."""
    return -logits.abs().amin(dim=1, keepdim=True)


class PointMLP(nn.Module):
    """Per-point logits from (R, C, P) fine features and (R, K, P) coarse logits: 1x1 convolutions
    with the coarse logits appended to every layer's input (as PointRend's point head does), K out."""

    def __init__(self, in_channels: int, coarse_channels: int, fc_dim: int, num_fc: int):
        super().__init__()
        self.fcs = nn.ModuleList()
        channels = in_channels
        for _ in range(num_fc):
            fc = nn.Conv1d(channels + coarse_channels, fc_dim, kernel_size=1)
            nn.init.kaiming_normal_(fc.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(fc.bias, 0)
            self.fcs.append(fc)
            channels = fc_dim
        self.predictor = nn.Conv1d(channels + coarse_channels, coarse_channels, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(R, C, P) fine features and (R, K, P) coarse logits at P points per box -> (R, K, P) logits,
        float32 or the autocast dtype."""
        x = fine
        for fc in self.fcs:
            x = F.relu(fc(cat([x, coarse], dim=1)))
        return self.predictor(cat([x, coarse], dim=1))


@ROI_MASK_HEAD_REGISTRY.register()
class PointRefinedMaskHead(AdaptiveFusionMaskHead):
    """:class:`~.adaptive_pooling.AdaptiveFusionMaskHead` as the coarse stage, refined at points (see the
    module docstring). Its masks come out at 28 * 2 ** ``SUBDIVISION_STEPS`` per side; with 0 steps its
    outputs are the coarse head's. The losses are the coarse head's plus ``loss_mask_point`` (binary
    cross-entropy of the point logits of cell and, with ``NUCLEUS``, nucleus)."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, point_in_features: List[str],
                 point_feature_shapes: Dict[str, ShapeSpec], fc_dim: int, num_fc: int, train_num_points: int,
                 oversample_ratio: float, importance_sample_ratio: float, subdivision_steps: int,
                 subdivision_num_points: int, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.point_in_features = list(point_in_features)
        self.point_scales = [1.0 / point_feature_shapes[f].stride for f in self.point_in_features]
        coarse_channels = 1 if self.nucleus_predictor is None else 2
        in_channels = sum(point_feature_shapes[f].channels for f in self.point_in_features)
        self.point_head = PointMLP(in_channels, coarse_channels, fc_dim, num_fc)
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points

    @classmethod
    def point_features_of(cls, cfg: CfgNode) -> List[str]:
        refine = cfg.MODEL.ROI_MASK_HEAD.POINT_REFINE
        return list(refine.IN_FEATURES) + ([IMAGE_FEATURE] if refine.IMAGE else [])

    @classmethod
    def input_features(cls, cfg: CfgNode) -> List[str]:
        names = super().input_features(cfg)
        return names + [f for f in cls.point_features_of(cfg) if f not in names]

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Mapping[str, ShapeSpec]) -> Dict[str, Any]:
        ret = super().from_config(cfg, input_shape)
        refine = cfg.MODEL.ROI_MASK_HEAD.POINT_REFINE
        point_features = cls.point_features_of(cfg)
        missing = [f for f in point_features if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.ROI_MASK_HEAD.POINT_REFINE.IN_FEATURES: no feature map {missing} "
                             f"(the model has {sorted(input_shape)})")
        if not point_features:
            raise ValueError("MODEL.ROI_MASK_HEAD.POINT_REFINE: no IN_FEATURES and IMAGE False: the points "
                             "would see nothing")
        ret.update(point_in_features=point_features,
                   point_feature_shapes={f: input_shape[f] for f in point_features},
                   fc_dim=refine.FC_DIM, num_fc=refine.NUM_FC, train_num_points=refine.TRAIN_NUM_POINTS,
                   oversample_ratio=refine.OVERSAMPLE_RATIO,
                   importance_sample_ratio=refine.IMPORTANCE_SAMPLE_RATIO,
                   subdivision_steps=refine.SUBDIVISION_STEPS,
                   subdivision_num_points=refine.SUBDIVISION_NUM_POINTS)
        return ret

    def forward(self, features: Dict[str, torch.Tensor], instances: List[Instances]
                ) -> Union[Dict[str, torch.Tensor], List[Instances]]:
        """Losses in training; at inference, ``instances`` with their refined masks set.

        Args:
            features: float32 {name: (N, C, H / s, W / s)} maps of stride s of :meth:`input_features`: the
                coarse head's, ``POINT_REFINE.IN_FEATURES`` and, with ``POINT_REFINE.IMAGE``, ``"image"``
                ((N, 3, H, W), the normalised input batch).
            instances: per image, the foreground proposals in training (``proposal_boxes``, ``gt_classes``,
                ``gt_masks`` and, for the nucleus, ``gt_nuclei``; both masks BitMasks, read at points); the
                detections at inference (``pred_boxes``, ``pred_classes`` (R_i,) int64).

        Returns:
            Training: the coarse head's losses plus ``loss_mask_point``, 0-dim. Inference: ``instances``, each
            given ``pred_masks``, (R_i, 1, S, S) float32 probabilities of its predicted class with
            S = 2M * 2 ** ``SUBDIVISION_STEPS`` (M = ``POOLER_RESOLUTION``) and, with a nucleus,
            ``pred_nucleus_masks`` of the same shape.
        """
        cell, nucleus = self.coarse_logits(features, instances)
        if self.training:
            losses = self.coarse_losses(cell, nucleus, instances)
            losses["loss_mask_point"] = self._point_loss(features, instances, self._coarse(
                cell, nucleus, cat([x.gt_classes for x in instances]))) * self.loss_weight
            return losses
        classes = cat([x.pred_classes for x in instances])
        refined = self._subdivide(features, [x.pred_boxes for x in instances], self._coarse(cell, nucleus, classes))
        counts = [len(x) for x in instances]
        for x, probs in zip(instances, refined.sigmoid().split(counts)):
            x.pred_masks = probs[:, :1]
            if nucleus is not None:
                x.set(NUCLEUS_MASKS, probs[:, 1:])
        return instances

    @staticmethod
    def _coarse(cell: torch.Tensor, nucleus: Optional[torch.Tensor], classes: torch.Tensor) -> torch.Tensor:
        """(R, K, M, M): each instance's own class channel of the cell logits, then its nucleus."""
        if cell.size(1) > 1:
            cell = cell[torch.arange(cell.size(0), device=cell.device), classes][:, None]
        return cell if nucleus is None else cat([cell, nucleus], dim=1)

    def _point_logits(self, features: Dict[str, torch.Tensor], boxes: List[Boxes], coords: torch.Tensor,
                      coarse: torch.Tensor) -> torch.Tensor:
        """(R, K, P) logits at ``coords`` ((R, P, 2), box-normalised [0, 1] x [0, 1])."""
        fine, _ = point_sample_fine_grained_features(
            [features[f] for f in self.point_in_features], self.point_scales, boxes, coords)
        return self.point_head(fine, point_sample(coarse, coords, align_corners=False))

    def _point_loss(self, features: Dict[str, torch.Tensor], instances: List[Instances],
                    coarse: torch.Tensor) -> torch.Tensor:
        if coarse.size(0) == 0:
            return coarse.sum() * 0
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                coarse.detach().float(), uncertainty, self.train_num_points, self.oversample_ratio,
                self.importance_sample_ratio)
        boxes = [x.proposal_boxes for x in instances]
        logits = self._point_logits(features, boxes, coords, coarse)
        fields = ["gt_masks"] + (["gt_nuclei"] if coarse.size(1) > 1 else [])
        labels = torch.stack([_point_labels(instances, coords, boxes, f) for f in fields], dim=1)
        storage = get_event_storage()
        storage.put_scalar("point/accuracy", ((logits > 0) == (labels > 0.5)).float().mean().item())
        return F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="mean")

    def _subdivide(self, features: Dict[str, torch.Tensor], boxes: List[Boxes], coarse: torch.Tensor
                   ) -> torch.Tensor:
        """Coarse (R, K, M, M) logits -> (R, K, M * 2 ** steps, ...) with the most uncertain points of
        each step re-predicted."""
        logits = coarse
        if coarse.size(0) == 0:
            side = coarse.size(2) * 2 ** self.subdivision_steps
            return coarse.new_zeros(0, coarse.size(1), side, side)
        for _ in range(self.subdivision_steps):
            logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
            indices, coords = get_uncertain_point_coords_on_grid(uncertainty(logits), self.subdivision_num_points)
            points = self._point_logits(features, boxes, coords, coarse)
            rois, channels, height, width = logits.shape
            logits = (logits.reshape(rois, channels, height * width)
                      .scatter(2, indices[:, None].expand(-1, channels, -1), points.to(logits.dtype))
                      .view(rois, channels, height, width))
        return logits


def _point_labels(instances: List[Instances], coords: torch.Tensor, boxes: List[Boxes], field: str
                  ) -> torch.Tensor:
    """(R, P) ground truth of ``field`` (BitMasks) at box-normalised ``coords``, bilinear (fractional
    within a pixel of the outline)."""
    with torch.no_grad():
        in_image = get_point_coords_wrt_image(Boxes.cat(boxes).tensor, coords)
        labels = []
        for x, points in zip(instances, in_image.split([len(x) for x in instances])):
            if len(x) == 0:
                continue
            masks = x.get(field).tensor
            scale = torch.tensor([masks.shape[-1], masks.shape[-2]], dtype=points.dtype, device=points.device)
            labels.append(point_sample(masks.to(torch.float32)[:, None], points / scale,
                                       align_corners=False)[:, 0])
        return cat(labels).to(coords.device)
