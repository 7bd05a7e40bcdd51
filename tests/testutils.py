"""Helpers shared by the tests: fixtures built on disk (SegPC masks, a tiny classifier checkpoint, an
unwritable folder) and comparisons of two models' detections."""
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
import torch

from detectron2_myeloma.classifier.config import get_classifier_cfg
from detectron2_myeloma.classifier.model import build_classifier, classifier_checkpoint


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


def assert_float32_fields(instances) -> None:
    """Every floating field of ``instances`` (boxes included) is float32."""
    for name, value in instances.get_fields().items():
        tensor = getattr(value, "tensor", value)
        assert not tensor.is_floating_point() or tensor.dtype == torch.float32, name


def assert_twin_detections(other, reference, top: int = 5) -> torch.Tensor:
    """Each of the ``top`` best detections of ``other`` (a reduced-precision or other-device run) has a
    twin in ``reference`` (box IoU > 0.95, score within 0.02): half precision keeps ~3 significant
    digits, and NMS near its threshold may keep one box more or less. Returns the twins' indices."""
    from detectron2.structures import pairwise_iou

    iou, twin = pairwise_iou(other.pred_boxes[:top], reference.pred_boxes).max(dim=1)
    assert (iou > 0.95).all(), iou
    torch.testing.assert_close(other.scores[:top], reference.scores[twin], rtol=0, atol=0.02)
    return twin


def detection_pairs(model, reference, batch):
    """``(model's Instances, reference's Instances)`` of each image of ``batch``, both in eval mode."""
    model.eval()
    reference.eval()
    with torch.no_grad():
        ours, theirs = model(batch), reference(batch)
    return [(a["instances"], b["instances"]) for a, b in zip(ours, theirs)]


def single_torch_thread() -> Iterator[None]:
    """Run a test with one torch thread (a fixture body): on tiny tensors and shared cores, the threads'
    synchronisation stalls cost more than they compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextmanager
def unwritable_folder(path: Path) -> Iterator[Path]:
    """``path``, made as a folder in which nothing can be created: mode 0o555, or, for root (whom modes
    do not stop), the immutable attribute (``chattr +i``); undone on exit. Skips the test where neither
    stops a write (root on a file system without that attribute)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        undo = ["chmod", "755", str(path)]
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)]).returncode == 0:
        undo = ["chattr", "-i", str(path)]
    else:
        pytest.skip("running as root, whom chmod does not stop, and chattr +i does not work here")
    try:
        try:
            (path / "probe").mkdir()
        except OSError:
            pass
        else:
            pytest.skip(f"{path} stays writable after chmod 0o555 or chattr +i")
        yield path
    finally:
        subprocess.run(undo, check=True)
