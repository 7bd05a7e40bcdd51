"""Mixed precision and memory format shared by training and inference.

bfloat16 on the CPU (AMX/AVX-512 run its convolutions and matrix products several times faster than
float32, and its float32-sized exponent needs no gradient scaler), float16 on CUDA.
"""
import contextlib
from typing import ContextManager

import torch
from detectron2.structures import Instances


def autocast(device: torch.device, enabled: bool) -> ContextManager:
    """Autocast for ``device``: float16 on CUDA, bfloat16 on the CPU; a no-op when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def float32_fields(instances: Instances) -> Instances:
    """``instances`` with every reduced-precision floating tensor field cast to float32, so that what
    leaves an autocast inference (scores, mask probabilities) looks as it does without autocast."""
    for name, value in instances.get_fields().items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
            instances.set(name, value.float())
    return instances
