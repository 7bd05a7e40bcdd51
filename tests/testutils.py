"""Helpers for tests that build small fixtures on disk: SegPC masks, a tiny classifier checkpoint."""
from pathlib import Path

import cv2
import numpy as np
import torch

from detectron2_myeloma.classifier_config import get_classifier_cfg
from detectron2_myeloma.modeling.classifier import build_classifier, classifier_checkpoint


def write_segpc_cell(path: Path, shape, center, radius, nucleus_radius) -> np.ndarray:
    """Write one SegPC mask (20 cytoplasm disc with a 40 nucleus disc) and return it."""
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, center, radius, 20, -1)
    cv2.circle(mask, center, nucleus_radius, 40, -1)
    cv2.imwrite(str(path), mask)
    return mask


def write_tiny_classifier(path: Path, size: int = 32, seed: int = 0, threshold: float = 0.5) -> Path:
    """A cell classifier checkpoint, as tools/train_classifier.py writes it, of timm's 100k-parameter
    ``test_efficientnet`` (random weights, ``size`` px crops, TEST.THRESHOLD ``threshold``). Its head is
    scaled up so that the myeloma probabilities spread around 0.5 and visibly depend on the crop (a
    random head keeps them all ~0.47)."""
    cfg = get_classifier_cfg()
    cfg.merge_from_list(["MODEL.NAME", "test_efficientnet", "INPUT.SIZE", size, "DEVICE", "cpu",
                         "TEST.THRESHOLD", threshold])
    torch.manual_seed(seed)
    model = build_classifier(cfg, load_pretrained=False)
    with torch.no_grad():
        model.net.get_classifier().weight.mul_(300)
    torch.save(classifier_checkpoint(model, cfg), path)
    return path
