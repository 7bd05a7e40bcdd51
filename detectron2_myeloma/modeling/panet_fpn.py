"""FPN with PANet's bottom-up path augmentation and attention on the pyramid levels (R-Mask R-CNN)."""
from typing import Callable, Dict, List, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

# Builds the attention module for one pyramid level from its channel count.
AttentionFactory = Callable[[int], nn.Module]


class PANetFPN(FPN):
    """Detectron2's FPN (P2..P5, computed by FPN itself), then:

    1. FPN-AM: optional attention on each P level;
    2. PANet's bottom-up path: N2 = P2, N(i+1) = ReLU(conv3x3(ReLU(conv3x3_stride2(Ni)) + P(i+1)));
    3. B-U-AM: optional attention on each N level, inline, so the attended Ni also feeds N(i+1);
    4. p6 = LastLevelMaxPool of the last level (N5 with the bottom-up path, else P5), after attention.

    Outputs are named p2..p6 with strides 4..64 whichever path made them, so RPN and ROI heads work
    unchanged. Being a subclass (not a wrapper) keeps FPN's parameter names (``fpn_lateral2``...), so
    Detectron2 Mask R-CNN checkpoints still fill them. FPN gets no top block: p6 is pooled here once,
    from the final last level.
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: List[str],
        out_channels: int,
        *,
        norm: str = "",
        fuse_type: str = "sum",
        bottom_up_path: bool = True,
        fpn_attention: Optional[AttentionFactory] = None,
        bu_attention: Optional[AttentionFactory] = None,
    ):
        super().__init__(bottom_up, in_features, out_channels, norm=norm, top_block=None, fuse_type=fuse_type)
        if bu_attention is not None and not bottom_up_path:
            raise ValueError("attention on the bottom-up path (B-U-AM) needs the bottom-up path")
        levels = list(self._out_features)
        self.fpn_attention = self._per_level(fpn_attention, levels, out_channels)
        self.bu_attention = self._per_level(bu_attention, levels, out_channels)
        self.bottom_up_path = bottom_up_path
        self.pa_downsample_convs: List[nn.Module] = []
        self.pa_output_convs: List[nn.Module] = []
        if bottom_up_path:
            for level in levels[1:]:
                downsample = self._conv_relu(out_channels, norm, stride=2)
                output = self._conv_relu(out_channels, norm, stride=1)
                self.add_module(f"pa_downsample{level[1:]}", downsample)
                self.add_module(f"pa_output{level[1:]}", output)
                self.pa_downsample_convs.append(downsample)
                self.pa_output_convs.append(output)
        self.last_level_pool = LastLevelMaxPool()
        self._p6 = f"p{int(levels[-1][1:]) + 1}"

    @staticmethod
    def _per_level(
        factory: Optional[AttentionFactory], levels: List[str], channels: int
    ) -> Optional[nn.ModuleDict]:
        return nn.ModuleDict({level: factory(channels) for level in levels}) if factory else None

    @staticmethod
    def _conv_relu(channels: int, norm: str, stride: int) -> Conv2d:
        conv = Conv2d(
            channels,
            channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            bias=not norm,
            norm=get_norm(norm, channels),
            activation=F.relu,
        )
        weight_init.c2_xavier_fill(conv)
        return conv

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The pyramid the class docstring describes.

        Args:
            x: (N, 3, H, W) normalised input batch, H and W multiples of ``size_divisibility`` (the stride
                of the last bottom-up feature, 32 for res5), as the model pads it.

        Returns:
            {``p<k>``: (N, out_channels, H / 2**k, W / 2**k)} for the FPN levels (p2..p5 from res2..res5),
            plus the next level (p6, rounded up) pooled from the last; float32 or the autocast dtype
            (a level last passed through a softmax attention gate under CUDA autocast is float32).
        """
        pyramid = super().forward(x)
        levels = list(pyramid)
        outputs = [pyramid[level] for level in levels]
        if self.fpn_attention is not None:
            outputs = [self.fpn_attention[level](p) for level, p in zip(levels, outputs)]
        if self.bottom_up_path:
            path = [self._attend_bottom_up(levels[0], outputs[0])]
            for level, p, downsample, output in zip(
                levels[1:], outputs[1:], self.pa_downsample_convs, self.pa_output_convs
            ):
                path.append(self._attend_bottom_up(level, output(downsample(path[-1]) + p)))
            outputs = path
        outputs.extend(self.last_level_pool(outputs[-1]))
        return dict(zip(levels + [self._p6], outputs))

    def _attend_bottom_up(self, level: str, n: torch.Tensor) -> torch.Tensor:
        return self.bu_attention[level](n) if self.bu_attention is not None else n

    def output_shape(self) -> Dict[str, ShapeSpec]:
        shapes = super().output_shape()
        last = shapes[self._out_features[-1]]
        shapes[self._p6] = ShapeSpec(channels=last.channels, stride=last.stride * 2)
        return shapes
