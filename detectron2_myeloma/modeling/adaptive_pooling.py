"""PANet's adaptive feature pooling for the mask head.

Standard FPN heads pool each RoI from the single level its size selects. PANet pools every RoI from
every level, passes each level through its own first conv layer (same structure, separate weights)
and fuses the levels element-wise (max or sum), so each mask sees both fine and coarse features.
"""
from typing import Any, Dict, List

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead
from detectron2.structures import Boxes
from torch import nn

FUSIONS = ("max", "sum")


class AllLevelsROIPooler(ROIPooler):
    """ROIPooler that pools every box from every level instead of from the level its size selects.

    Reuses ROIPooler's per-level ROIAlign ops; returns a (R, L, C, M, M) tensor for R boxes and
    L levels.
    """

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
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
        per_level = torch.stack([conv(x[:, level]) for level, conv in enumerate(self.convs)])
        return per_level.amax(dim=0) if self.fusion == "max" else per_level.sum(dim=0)


class AdaptiveFusionMaskHead(MaskRCNNConvUpsampleHead):
    """Detectron2's mask head with its first conv (``mask_fcn1``) replaced by a :class:`LevelFusionConv`,
    so that it takes the (R, L, C, M, M) features of :class:`AllLevelsROIPooler`; the rest (further
    convs, deconv, predictor, loss) is unchanged."""

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_levels: int,
        fusion: str,
        num_classes: int,
        conv_dims: List[int],
        conv_norm: str = "",
        **kwargs,
    ):
        if len(conv_dims) < 2:
            raise ValueError("adaptive mask pooling needs MODEL.ROI_MASK_HEAD.NUM_CONV >= 1")
        super().__init__(
            input_shape, num_classes=num_classes, conv_dims=conv_dims, conv_norm=conv_norm, **kwargs
        )
        # Reassigning keeps mask_fcn1's place in the nn.Sequential that `layers` runs; the parent's
        # list of its conv layers must not keep the replaced one.
        self.mask_fcn1 = LevelFusionConv(num_levels, input_shape.channels, conv_dims[0], conv_norm, fusion)
        self.conv_norm_relus[0] = self.mask_fcn1

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec) -> Dict[str, Any]:
        ret = super().from_config(cfg, input_shape)
        ret.update(num_levels=len(cfg.MODEL.ROI_HEADS.IN_FEATURES), fusion=cfg.MODEL.RMASK.ADAPTIVE_FUSION)
        return ret
