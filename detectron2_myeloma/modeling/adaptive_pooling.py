"""PANet's adaptive feature pooling for the mask head.

Standard FPN heads pool each RoI from the single level its size selects. PANet pools every RoI from
every level, passes each level through its own first conv layer (same structure, separate weights)
and fuses the levels element-wise (max or sum), so each mask sees both fine and coarse features.

The head is ``ROI_MASK_HEAD.NAME "AdaptiveFusionMaskHead"`` and pools for itself (as PointRend's mask
head does), so it goes with Detectron2's ``ROI_MASK_HEAD.POOLER_TYPE ""``: the ROI heads hand it the
feature maps instead of pooled features. Its own pooler's type is ``MODEL.RMASK.ADAPTIVE_POOLER_TYPE``.
"""
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from detectron2.structures import Boxes, Instances
from torch import nn

from ..utils.errors import InputError
from .nucleus import nucleus_inference, nucleus_mask_loss

FUSIONS = ("max", "sum")


class AllLevelsROIPooler(ROIPooler):
    """ROIPooler that pools every box from every level instead of from the level its size selects.

    Reuses ROIPooler's per-level ROIAlign ops; returns a (R, L, C, M, M) tensor for R boxes and
    L levels.
    """

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        """Every box pooled from every level.

        Args:
            x: L feature maps, (N, C, H_l, W_l) each, in the order of the pooler's scales (finest first).
            box_lists: N ``Boxes``, one per image: (R_i, 4) float32 XYXY boxes in model-input pixels.

        Returns:
            (R, L, C, M, M) features: R = sum of the R_i, the boxes of all images in order; M the output
            size. The feature maps' dtype (float32 as :class:`~.roi_heads.RMaskROIHeads` hands them over).
        """
        if len(x) != len(self.level_poolers):
            raise ValueError(f"{len(x)} feature maps for {len(self.level_poolers)} pooling levels")
        boxes = convert_boxes_to_pooler_format(box_lists)
        return torch.stack([pool(features, boxes) for features, pool in zip(x, self.level_poolers)], dim=1)


class LevelFusionConv(nn.Module):
    """One conv (+norm) + ReLU per level, then element-wise max or sum over levels: (R, L, C, M, M) ->
    (R, C', M, M). Fusing after one layer lets each level adapt its features first (PANet)."""

    def __init__(
        self, num_levels: int, in_channels: int, out_channels: int, norm: str = "", fusion: str = "max"
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"MODEL.RMASK.ADAPTIVE_FUSION={fusion!r}: expected one of {FUSIONS}")
        self.fusion = fusion
        self.convs = nn.ModuleList(
            Conv2d(
                in_channels,
                out_channels,
                kernel_size=3,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, out_channels),
                activation=nn.ReLU(),
            )
            for _ in range(num_levels)
        )
        for conv in self.convs:
            weight_init.c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, L, C, M, M) pooled features (L = ``num_levels``) -> (R, out_channels, M, M), in the convs'
        output dtype: the input's, or the autocast dtype."""
        per_level = torch.stack([conv(x[:, level]) for level, conv in enumerate(self.convs)])
        return per_level.amax(dim=0) if self.fusion == "max" else per_level.sum(dim=0)


@ROI_MASK_HEAD_REGISTRY.register()
class AdaptiveFusionMaskHead(MaskRCNNConvUpsampleHead):
    """Detectron2's mask head that pools every RoI from every level (:class:`AllLevelsROIPooler`: an
    ``RMASK.ADAPTIVE_POOLER_TYPE`` op at ``ROI_MASK_HEAD.POOLER_RESOLUTION`` and ``POOLER_SAMPLING_RATIO``)
    and whose first conv (``mask_fcn1``) is a :class:`LevelFusionConv`; the rest (further convs, deconv,
    predictor, loss) is unchanged.

    ``forward`` takes the feature maps ``{name: (N, C, H, W)}`` of ``ROI_HEADS.IN_FEATURES`` and the
    instances (proposals in training, detections at inference) rather than pooled features.

    With ``nucleus`` (``ROI_MASK_HEAD.NUCLEUS``) a second 1x1 predictor on the same features gives each
    instance its nucleus (:mod:`.nucleus`); without it the head is exactly the one described above.
    """

    predicts_nucleus = True  # honours ROI_MASK_HEAD.NUCLEUS

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        pooler: AllLevelsROIPooler,
        in_features: List[str],
        fusion: str,
        num_classes: int,
        conv_dims: List[int],
        conv_norm: str = "",
        nucleus: bool = False,
        **kwargs,
    ):
        if len(conv_dims) < 2:
            raise ValueError("adaptive mask pooling needs MODEL.ROI_MASK_HEAD.NUM_CONV >= 1")
        super().__init__(
            input_shape, num_classes=num_classes, conv_dims=conv_dims, conv_norm=conv_norm, **kwargs
        )
        self.pooler = pooler
        self.in_features = list(in_features)
        # Reassigning keeps mask_fcn1's place in the nn.Sequential that `layers` runs; the parent's
        # list of its conv layers must not keep the replaced one.
        levels = len(self.in_features)
        self.mask_fcn1 = LevelFusionConv(levels, input_shape.channels, conv_dims[0], conv_norm, fusion)
        self.conv_norm_relus[0] = self.mask_fcn1
        # After the pooler: the nn.Sequential's layers up to `predictor` stay as they were.
        self.nucleus_predictor: Optional[nn.Module] = None
        if nucleus:
            self.nucleus_predictor = Conv2d(conv_dims[-1], 1, kernel_size=1)
            nn.init.normal_(self.nucleus_predictor.weight, std=0.001)
            nn.init.constant_(self.nucleus_predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Mapping[str, ShapeSpec]) -> Dict[str, Any]:
        if not isinstance(input_shape, Mapping):
            raise InputError(f'MODEL.ROI_MASK_HEAD.POOLER_TYPE "{cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE}": '
                             f"{cfg.MODEL.ROI_MASK_HEAD.NAME} pools for itself and needs the feature maps: set "
                             'it to "" (its own pooler is MODEL.RMASK.ADAPTIVE_POOLER_TYPE)')
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        channels = input_shape[in_features[0]].channels
        ret = super().from_config(cfg, ShapeSpec(channels=channels, height=resolution, width=resolution))
        ret.update(
            pooler=AllLevelsROIPooler(
                output_size=resolution,
                scales=tuple(1.0 / input_shape[f].stride for f in in_features),
                sampling_ratio=cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO,
                pooler_type=cfg.MODEL.RMASK.ADAPTIVE_POOLER_TYPE,
            ),
            in_features=in_features,
            fusion=cfg.MODEL.RMASK.ADAPTIVE_FUSION,
            nucleus=cfg.MODEL.ROI_MASK_HEAD.NUCLEUS,
        )
        return ret

    @classmethod
    def input_features(cls, cfg: CfgNode) -> List[str]:
        """The feature maps :class:`~.roi_heads.RMaskROIHeads` hands to ``forward``."""
        return list(cfg.MODEL.ROI_HEADS.IN_FEATURES)

    def mask_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """(R, L, C, M, M) pooled features -> the (R, D, 2M, 2M) features both predictors read (D the last
        of ``conv_dims``; the deconv doubles M), float32 or the autocast dtype. The head is an
        nn.Sequential of its layers up to ``predictor``; the modules registered after it (pooler,
        nucleus predictor) are not part of that chain."""
        for layer in self:
            if layer is self.predictor:
                return pooled
            pooled = layer(pooled)
        raise AssertionError("the mask head has no predictor")

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """(R, L, C, M, M) pooled features -> (R, K, 2M, 2M) cell logits, K as in :meth:`coarse_logits`;
        the nucleus predictor is not run."""
        return self.predictor(self.mask_features(x))

    def coarse_logits(self, features: Dict[str, torch.Tensor], instances: List[Instances]
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Cell and nucleus logits of the proposals (training) or detections (inference).

        Args:
            features: {name: (N, C, H / s, W / s)} feature maps of stride s, at least ``in_features``
                (float32 from the ROI heads).
            instances: one per image; its ``proposal_boxes`` (training) or ``pred_boxes`` (inference), (R_i, 4)
                float32 XYXY in model-input pixels, are pooled.

        Returns:
            (R, K, 2M, 2M) cell logits (K = ``ROI_HEADS.NUM_CLASSES``, 1 with ``CLS_AGNOSTIC_MASK``;
            M = ``POOLER_RESOLUTION``) and (R, 1, 2M, 2M) nucleus logits, None without a nucleus predictor.
            R boxes of all images in order; float32 or the autocast dtype.
        """
        boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
        hidden = self.mask_features(self.pooler([features[f] for f in self.in_features], boxes))
        nucleus = self.nucleus_predictor(hidden) if self.nucleus_predictor is not None else None
        return self.predictor(hidden), nucleus

    def coarse_losses(self, cell: torch.Tensor, nucleus: Optional[torch.Tensor], instances: List[Instances]
                      ) -> Dict[str, torch.Tensor]:
        """``loss_mask`` of the cell logits and, with a nucleus, ``loss_nucleus``, each times ``loss_weight``.

        Args:
            cell: (R, K, 2M, 2M) logits of :meth:`coarse_logits`.
            nucleus: (R, 1, 2M, 2M) logits, or None.
            instances: per image, the foreground proposals: ``proposal_boxes``, ``gt_classes`` ((R_i,) int64),
                ``gt_masks`` and, for the nucleus, ``gt_nuclei`` (BitMasks).

        Returns:
            0-dim float32 losses (the zero of a batch without foreground may have the logits' dtype).
        """
        losses = {"loss_mask": mask_rcnn_loss(cell, instances, self.vis_period) * self.loss_weight}
        if nucleus is not None:
            losses["loss_nucleus"] = nucleus_mask_loss(nucleus, instances) * self.loss_weight
        return losses

    def forward(self, features: Dict[str, torch.Tensor], instances: List[Instances]
                ) -> Union[Dict[str, torch.Tensor], List[Instances]]:
        """Losses in training; at inference, ``instances`` with their masks set.

        Args:
            features: {name: (N, C, H / s, W / s)} maps of :meth:`input_features`, float32 from the ROI heads.
            instances: per image, the foreground proposals in training (as :meth:`coarse_losses` reads
                them); the detections at inference: ``pred_boxes`` and ``pred_classes`` ((R_i,) int64).

        Returns:
            Training: :meth:`coarse_losses`. Inference: ``instances``, each given ``pred_masks``, (R_i, 1, 2M, 2M)
            probabilities of its predicted class and, with a nucleus, ``pred_nucleus_masks`` of the same shape;
            float32, as the ROI heads run without autocast at inference.
        """
        cell, nucleus = self.coarse_logits(features, instances)
        if self.training:
            return self.coarse_losses(cell, nucleus, instances)
        mask_rcnn_inference(cell, instances)
        if nucleus is not None:
            nucleus_inference(nucleus, instances)
        return instances
