"""A timm ``features_only`` CNN as a Detectron2 bottom-up backbone, with offline weights and freezing."""
import logging
import math
from typing import Dict, List

import timm
import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from timm.layers import freeze_batch_norm_2d
from timm.utils import freeze
from torch import nn

from .precision import body_precision
from .pretrained import LITE_PIXEL_MEAN_STD, load_timm_weights, packaged_weights_path

logger = logging.getLogger(__name__)


class TimmBackbone(Backbone):
    """Returns the timm model's feature maps named ``res<k>`` for stride ``2**k``.

    The names follow Detectron2's ResNet so that one ``MODEL.FPN.IN_FEATURES`` (res2..res5) serves
    both the timm and the ResNet bottom-up.
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        strides = body.feature_info.reduction()
        self._out_features = [f"res{int(math.log2(s))}" for s in strides]
        self._out_feature_strides = dict(zip(self._out_features, strides))
        self._out_feature_channels = dict(zip(self._out_features, body.feature_info.channels()))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(N, C, H, W) input batch (cast to float32) -> {``res<k>``: (N, C_k, H / 2**k, W / 2**k)} for the
        model's feature strides 2**k (exact when 2**k divides H and W, as the FPN's padding ensures); float32
        on the CPU, else float32 or the autocast dtype."""
        # float32 on the CPU even under autocast: see .precision.
        with body_precision(x.device):
            features = self.body(x.float())
        return dict(zip(self._out_features, features))


def modules_up_to(model: nn.Module, boundary: str) -> List[str]:
    """Names of the fewest modules that together hold everything run up to and including ``boundary``.

    timm registers modules in execution order, so everything registered before the boundary runs
    before it. ``FeatureListNet`` flattens nested names with "_" ("stages_0" for "stages.0"), so
    "." and "_" compare equal.
    """
    target = boundary.replace(".", "_")
    names: List[str] = []

    def visit(module: nn.Module, prefix: str) -> bool:
        for name, child in module.named_children():
            path = prefix + name
            key = path.replace(".", "_")
            if key == target:
                names.append(path)
                return True
            if target.startswith(key + "_"):
                return visit(child, path + ".")
            names.append(path)
        return False

    if not visit(model, ""):
        raise ValueError(f"module {boundary} not found")
    return names


def freeze_stages(body: nn.Module, freeze_at: int) -> None:
    """Freeze weights and BatchNorm statistics of everything computed up to the stride ``2**freeze_at``
    feature level (one of timm's ``feature_info`` levels); 0 freezes nothing.

    As with Detectron2's ResNet ``FREEZE_AT=2`` (stem + res2), 2 freezes the stem and the stride-4 stage.
    """
    if freeze_at == 0:
        return
    boundaries = {level["reduction"]: level["module"] for level in body.feature_info.info}
    if 2**freeze_at not in boundaries:
        strides = sorted(boundaries)
        raise ValueError(f"MODEL.TIMM.FREEZE_AT={freeze_at}: the model's feature strides are {strides}")
    freeze(body, modules_up_to(body, boundaries[2**freeze_at]))


def _load_imagenet_weights(body: nn.Module, cfg: CfgNode) -> None:
    name, path = cfg.MODEL.TIMM.NAME, cfg.MODEL.TIMM.WEIGHTS
    if path:
        load_timm_weights(body, path)
        return
    packaged = packaged_weights_path(name)
    if packaged is None:
        logger.warning(
            "!!! MODEL.TIMM.NAME=%s has no packaged ImageNet weights and MODEL.TIMM.WEIGHTS is empty: "
            "the bottom-up starts from RANDOM weights. Set MODEL.TIMM.WEIGHTS to a timm state dict. !!!",
            name,
        )
        return
    load_timm_weights(body, packaged, by_order=True)
    pixel_stats = list(cfg.MODEL.PIXEL_MEAN) + list(cfg.MODEL.PIXEL_STD)
    if cfg.INPUT.FORMAT != "RGB" or any(v != LITE_PIXEL_MEAN_STD for v in pixel_stats):
        logger.warning(
            "%s ImageNet weights expect INPUT.FORMAT=RGB and MODEL.PIXEL_MEAN = PIXEL_STD = %s per channel",
            name,
            LITE_PIXEL_MEAN_STD,
        )


def build_timm_bottom_up(cfg: CfgNode, input_shape: ShapeSpec) -> TimmBackbone:
    """The timm model ``MODEL.TIMM.NAME`` with its ImageNet weights, norm handling and frozen stages.

    ``MODEL.TIMM.NORM``: "FrozenBN" turns every BatchNorm into a frozen one (small CPU batches give
    useless batch statistics); "BN" keeps trainable BatchNorm after the frozen stages. timm's
    converter is used rather than Detectron2's because timm's ``BatchNormAct2d`` carries the
    activation (ReLU6 in EfficientNet-Lite), which Detectron2's ``FrozenBatchNorm2d`` would drop.
    """
    timm_cfg = cfg.MODEL.TIMM
    body = timm.create_model(
        timm_cfg.NAME,
        pretrained=False,
        features_only=True,
        out_indices=tuple(timm_cfg.OUT_INDICES),
        in_chans=input_shape.channels,
    )
    if timm_cfg.PRETRAINED:
        _load_imagenet_weights(body, cfg)
    if timm_cfg.NORM == "FrozenBN":
        body = freeze_batch_norm_2d(body)
    elif timm_cfg.NORM != "BN":
        raise ValueError(f"MODEL.TIMM.NORM={timm_cfg.NORM!r}: expected 'FrozenBN' or 'BN'")
    freeze_stages(body, timm_cfg.FREEZE_AT)
    return TimmBackbone(body)
