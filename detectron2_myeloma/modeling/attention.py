"""Channel and spatial attention (CBAM-style) for feature pyramids.

Near-identity at initialisation: the last convolution of each module is zero-initialised, so its
logits are 0, and the gate is rescaled so that logits of 0 give a gate of exactly 1 (sigmoid:
``2 * sigmoid``; softmax: ``n * softmax`` over the n channels or positions, whose mean is always 1).
A module therefore returns its input unchanged at iteration 0 and pretrained features are not
scrambled. The price: layers before that zero convolution (the channel MLP's first 1x1 conv) get
zero gradient until the first update has moved it away from zero.
"""
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_ORDERS = {"NONE": (), "CA": ("ca",), "SA": ("sa",), "CA-SA": ("ca", "sa"), "SA-CA": ("sa", "ca")}
GATES = ("sigmoid", "softmax")


def _check_gate(kind: str) -> None:
    if kind not in GATES:
        raise ValueError(f"attention gate {kind!r}: expected one of {GATES}")


def attention_gate(logits: torch.Tensor, kind: str, dims: Sequence[int]) -> torch.Tensor:
    """Gate from logits, equal to 1 where the logits are 0.

    "sigmoid": ``2 * sigmoid`` (a CBAM gate with range (0, 2)). "softmax": softmax over ``dims``
    times the number of elements there, so the gates compete and average to 1.

    ``logits`` may have any shape ((N, C, 1, 1) from :class:`ChannelAttention`, (N, 1, H, W) from
    :class:`SpatialAttention`) and ``dims`` must be consecutive. The gate has the logits' shape and dtype,
    except that CUDA autocast runs a softmax in float32, so a softmax gate is float32 there.
    """
    if kind == "sigmoid":
        return 2.0 * torch.sigmoid(logits)
    _check_gate(kind)
    flat = logits.flatten(dims[0], dims[-1])
    count = flat.shape[dims[0]]
    return (flat.softmax(dim=dims[0]) * count).view_as(logits)


class ChannelAttention(nn.Module):
    """Reweights channels from globally pooled statistics: a shared 2-layer 1x1-conv MLP on the average
    (and optionally max) pooled vector, logits summed, then a gate over channels."""

    def __init__(self, channels: int, reduction: int = 16, use_max_pool: bool = False, gate: str = "sigmoid"):
        super().__init__()
        _check_gate(gate)
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.use_max_pool = use_max_pool
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) features -> the same shape, each channel scaled by its gate; the input's dtype, or
        float32 where a softmax gate ran under CUDA autocast."""
        logits = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        if self.use_max_pool:
            logits = logits + self.fc2(F.relu(self.fc1(x.amax(dim=(2, 3), keepdim=True))))
        return x * attention_gate(logits, self.gate, dims=(1,))


class SpatialAttention(nn.Module):
    """Reweights positions: a k x k conv over the channel-wise mean and max maps, then a gate over
    positions (softmax: over all H*W positions of each image).

    The two maps are normalised per image (zero mean, unit variance over positions) before the conv,
    so the gate says where a position stands within its image, whatever the feature scale. Without
    this, the conv's gradient, summed over every position of unnormalised FPN maps, is large: in a
    few iterations the gate drifts into a uniform, saturated x2 gain, which stalls the RPN.
    """

    def __init__(self, kernel_size: int = 7, gate: str = "sigmoid"):
        super().__init__()
        _check_gate(gate)
        if kernel_size % 2 == 0:
            raise ValueError(f"spatial attention kernel size {kernel_size} must be odd (same-size output)")
        # A softmax over positions ignores a constant shift: no bias then.
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=gate == "sigmoid")
        nn.init.zeros_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) features -> the same shape, each position scaled by its gate; the input's dtype, or
        float32 where a softmax gate ran under CUDA autocast."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * attention_gate(self.conv(F.instance_norm(pooled)), self.gate, dims=(2, 3))


def build_attention(
    order: str,
    channels: int,
    *,
    gate: str = "sigmoid",
    reduction: int = 16,
    use_max_pool: bool = False,
    kernel_size: int = 7,
) -> Optional[nn.Sequential]:
    """Attention modules in ``order`` ("CA", "SA", "CA-SA", "SA-CA"), or None for "NONE".

    Submodules are named ``ca`` / ``sa`` so checkpoints say which is which.
    """
    if order not in ATTENTION_ORDERS:
        raise ValueError(f"attention order {order!r}: expected one of {sorted(ATTENTION_ORDERS)}")
    makers = {
        "ca": lambda: ChannelAttention(channels, reduction, use_max_pool, gate),
        "sa": lambda: SpatialAttention(kernel_size, gate),
    }
    parts = ATTENTION_ORDERS[order]
    return nn.Sequential(OrderedDict((part, makers[part]()) for part in parts)) if parts else None
