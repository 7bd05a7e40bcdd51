"""Cell classifier: a timm EfficientNet that tells myeloma plasma cells from other cells in square crops.

Crops come from :func:`.crops.crop_and_resize` (the same function at training and inference);
:meth:`CellClassifier.classify` is what :class:`.hook.CellClassifierHook` calls on the crops of its cells.
"""
import logging
import warnings
from typing import Optional, Union

import numpy as np
import timm
import torch
from fvcore.common.config import CfgNode
from torch import nn

from ..checkpoint import load_checkpoint
from ..modeling.pretrained import load_timm_weights, packaged_weights_path
from ..utils.device import available_device
from ..utils.errors import InputError
from .config import get_classifier_cfg
from .labels import CLASS_NAMES, MYELOMA

logger = logging.getLogger(__name__)


def _frozen_modules(net: nn.Module, freeze_at: int) -> list:
    if freeze_at <= 0:
        return []
    if not all(hasattr(net, name) for name in ("conv_stem", "bn1", "blocks")):
        raise ValueError(f"MODEL.FREEZE_AT needs an EfficientNet-like timm model, got {type(net).__name__}")
    if freeze_at > len(net.blocks):
        raise ValueError(f"MODEL.FREEZE_AT={freeze_at} but the model has {len(net.blocks)} block stages")
    return [net.conv_stem, net.bn1, *net.blocks[:freeze_at]]


class CellClassifier(nn.Module):
    """A timm network with its input normalisation, crop geometry, decision threshold and frozen stages.

    ``forward`` takes (N, 3, S, S) crops in 0..255 RGB (any dtype) and returns (N, 2) logits ordered as
    :data:`CLASS_NAMES`. A crop is myeloma when its myeloma probability is above ``threshold`` (the
    rule of the classifier's reported metrics). Frozen stages keep their BatchNorm statistics in
    training mode too.
    """

    def __init__(self, net: nn.Module, pixel_mean, pixel_std, input_size: int, crop_margin: float,
                 freeze_at: int = 0, threshold: float = 0.5, crop_diameters: float = 0.0):
        super().__init__()
        self.net = net
        self.input_size = int(input_size)
        self.crop_margin = float(crop_margin)
        self.crop_diameters = float(crop_diameters)
        self.threshold = float(threshold)
        # not persistent: the cfg in the checkpoint holds them
        for name, value in (("pixel_mean", pixel_mean), ("pixel_std", pixel_std)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32).view(1, 3, 1, 1), False)
        self._frozen = _frozen_modules(net, freeze_at)
        for module in self._frozen:
            module.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def train(self, mode: bool = True) -> "CellClassifier":
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) crops, 0..255 RGB of any dtype (uint8 from the crop folder and the hook), S =
        ``input_size`` -> (N, 2) logits: float32, or the autocast dtype under autocast. Normalised here, so
        that every caller hands raw pixels."""
        return self.net((crops.float() - self.pixel_mean) / self.pixel_std)

    @torch.no_grad()
    def classify(self, crops: Union[torch.Tensor, np.ndarray], batch_size: int = 64,
                 fixed_batch: bool = False) -> torch.Tensor:
        """Myeloma probability of each crop, on the model's device, in eval mode.

        Args:
            crops: (N, 3, S, S) tensor, or (N, S, S, 3) uint8 array (as the hook's ``cell_crops``);
                0..255 RGB, with S = ``input_size`` and cut as ``crop_margin`` / ``crop_diameters`` say.
                Only the crops move to the model's device, a chunk at a time.
            fixed_batch: every forward pass takes exactly ``batch_size`` crops, the last chunk padded
                with blank ones (whose outputs are dropped): on CUDA each new batch shape costs seconds
                of kernel selection, so a varying number of cells per image must not mean new shapes.
                In eval mode a crop's output does not depend on the others in its batch.

        Returns:
            (N,) myeloma probabilities on the model's device, float32 or the autocast dtype.
        """
        if isinstance(crops, np.ndarray):
            crops = torch.from_numpy(crops).permute(0, 3, 1, 2)
        if crops.dim() != 4 or crops.shape[1] != 3 or tuple(crops.shape[2:]) != (self.input_size,) * 2:
            size = self.input_size
            raise ValueError(f"expected (N, 3, {size}, {size}) crops, got {tuple(crops.shape)}")
        was_training = self.training
        self.eval()
        probs = []
        for chunk in crops.split(batch_size):
            count = len(chunk)
            if fixed_batch and count < batch_size:
                chunk = torch.cat([chunk, chunk.new_zeros((batch_size - count, *chunk.shape[1:]))])
            probs.append(torch.softmax(self(chunk.to(self.device)), dim=1)[:count, MYELOMA])
        self.train(was_training)
        return torch.cat(probs) if probs else torch.zeros(0, device=self.device)

    def warm_up(self, batch_size: int) -> None:
        """One forward pass of ``batch_size`` blank crops, so that the first image does not pay for
        the kernels' selection (seconds on CUDA)."""
        self.classify(torch.zeros((batch_size, 3, self.input_size, self.input_size), dtype=torch.uint8),
                      batch_size, fixed_batch=True)


def build_classifier(cfg: CfgNode, load_pretrained: bool = True) -> CellClassifier:
    """The classifier of ``cfg`` on cpu, with ImageNet weights when ``load_pretrained``.

    Weights: ``MODEL.WEIGHTS`` (timm state dict, by name) if set, else the packaged Lite0/Lite2 file
    (by order); any other model starts from random init, with a loud warning, since nothing may be
    downloaded. The 1000-class ImageNet head is never loaded: a new 2-class linear layer replaces it.
    """
    name = cfg.MODEL.NAME
    net = timm.create_model(name, pretrained=False, num_classes=0, drop_rate=cfg.MODEL.DROPOUT)
    if load_pretrained:
        packaged = packaged_weights_path(name)
        if cfg.MODEL.WEIGHTS:
            load_timm_weights(net, cfg.MODEL.WEIGHTS)
        elif packaged is not None:
            load_timm_weights(net, packaged, by_order=True)
        else:
            message = (f"!!! MODEL.NAME={name} has no packaged ImageNet weights and MODEL.WEIGHTS is empty: "
                       "the classifier starts from RANDOM initialisation and needs far more data and epochs. "
                       "Give a timm state dict in MODEL.WEIGHTS to fine-tune instead.")
            logger.warning(message)
            warnings.warn(message, stacklevel=2)
    net.reset_classifier(len(CLASS_NAMES))
    return CellClassifier(net, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.INPUT.SIZE,
                          cfg.INPUT.CROP_MARGIN, cfg.MODEL.FREEZE_AT, cfg.TEST.THRESHOLD,
                          cfg.INPUT.CROP_DIAMETERS)


def classifier_checkpoint(model: CellClassifier, cfg: CfgNode, **extra) -> dict:
    """What ``model_best.pth``/``model_last.pth`` hold: weights, cfg (YAML) and class names."""
    return {"model": model.state_dict(), "cfg": cfg.dump(), "class_names": list(CLASS_NAMES), **extra}


def load_classifier(path: str, device: Optional[Union[str, torch.device]] = None) -> CellClassifier:
    """A trained classifier from a checkpoint of :func:`classifier_checkpoint`, in eval mode.

    ``device`` defaults to the checkpoint cfg's DEVICE (``"auto"``: cuda when available); a CUDA device
    on a machine without one falls back to the CPU, as everywhere in the project (``available_device``).
    InputError naming the file for a damaged file or another kind of checkpoint.
    """
    checkpoint = load_checkpoint(path)
    if not {"model", "cfg", "class_names"} <= checkpoint.keys():
        raise InputError(f"{path}: not a cell classifier checkpoint (one of tools/train_classifier.py holds "
                         "model, cfg and class_names)")
    if tuple(checkpoint["class_names"]) != CLASS_NAMES:
        raise InputError(f"{path}: has classes {checkpoint['class_names']}, expected {list(CLASS_NAMES)}")
    cfg = get_classifier_cfg()
    cfg.merge_from_other_cfg(CfgNode.load_cfg(checkpoint["cfg"]))
    model = build_classifier(cfg, load_pretrained=False)
    model.load_state_dict(checkpoint["model"])
    device = available_device(str(device if device is not None else cfg.DEVICE))
    return model.to(torch.device(device)).eval()
