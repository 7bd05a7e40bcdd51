"""R-Mask R-CNN backbones: a timm or ResNet bottom-up, FPN, and the ``MODEL.RMASK`` additions."""
from functools import partial
from typing import Optional

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from .attention import build_attention
from .panet_fpn import AttentionFactory, PANetFPN
from .timm_backbone import build_timm_bottom_up


def _attention_factory(cfg: CfgNode, order: str) -> Optional[AttentionFactory]:
    if order == "NONE":
        return None
    rmask = cfg.MODEL.RMASK
    return partial(
        build_attention,
        order,
        gate=rmask.ATTENTION_GATE,
        reduction=rmask.CA_REDUCTION,
        use_max_pool=rmask.CA_USE_MAX_POOL,
        kernel_size=rmask.SA_KERNEL_SIZE,
    )


def build_rmask_fpn(cfg: CfgNode, bottom_up: Backbone) -> FPN:
    """FPN (p2..p6) on ``bottom_up`` with the ``MODEL.RMASK`` bottom-up path and attention.

    With all of them off this is Detectron2's Mask R-CNN FPN itself (``FPN`` + ``LastLevelMaxPool``),
    so the model is exactly plain Mask R-CNN.
    """
    rmask = cfg.MODEL.RMASK
    fpn_args = dict(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    if not rmask.BOTTOM_UP_PATH and rmask.FPN_ATTENTION == "NONE" and rmask.BU_ATTENTION == "NONE":
        return FPN(top_block=LastLevelMaxPool(), **fpn_args)
    return PANetFPN(
        bottom_up_path=rmask.BOTTOM_UP_PATH,
        fpn_attention=_attention_factory(cfg, rmask.FPN_ATTENTION),
        bu_attention=_attention_factory(cfg, rmask.BU_ATTENTION),
        **fpn_args,
    )


@BACKBONE_REGISTRY.register()
def build_timm_rmask_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """R-Mask R-CNN backbone on the timm bottom-up ``MODEL.TIMM.NAME`` (features named res2..res5)."""
    return build_rmask_fpn(cfg, build_timm_bottom_up(cfg, input_shape))


@BACKBONE_REGISTRY.register()
def build_resnet_rmask_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """R-Mask R-CNN backbone on Detectron2's ResNet (``MODEL.RESNETS``), for R-50/R-101 weights."""
    return build_rmask_fpn(cfg, build_resnet_backbone(cfg, input_shape))
