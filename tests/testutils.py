"""Helpers for tests that build small fixtures on disk."""
from pathlib import Path

import cv2
import numpy as np


def write_segpc_cell(path: Path, shape, center, radius, nucleus_radius) -> np.ndarray:
    """Write one SegPC mask (20 cytoplasm disc with a 40 nucleus disc) and return it."""
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, center, radius, 20, -1)
    cv2.circle(mask, center, nucleus_radius, 40, -1)
    cv2.imwrite(str(path), mask)
    return mask
