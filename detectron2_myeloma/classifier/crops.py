"""Square cell crops: the one function that cuts them, for the crop folder and for the post-hook.

A classifier only transfers from training to inference if both see identically made crops, so both cut
them with :func:`crop_and_resize` (geometry :func:`square_crop_box`, OpenCV area resampling, resized
once) from the full-resolution image on the CPU: the crops the hook classifies are bit-identical to
the saved training crops.

Coordinates are Detectron2's: continuous XYXY where pixel ``i`` covers ``[i, i + 1)``. Integer boxes are
half-open: ``[x0, x1) x [y0, y1)``.
"""
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..utils.errors import InputError

IntBox = Tuple[int, int, int, int]


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _square_axis(lo: float, hi: float, side: int, length: int) -> int:
    """Start of a ``side``-long window centred on ``[lo, hi)``, shifted inside ``[0, length)`` when it fits;
    otherwise the window covers the whole axis with the excess split evenly (one more pixel after)."""
    if side > length:
        return (length - side) // 2
    start = _round_half_up((lo + hi) / 2 - side / 2)
    return min(max(start, 0), length - side)


def square_crop_box(box_xyxy: Sequence[float], image_hw: Sequence[int], margin: float,
                    side: Optional[float] = None) -> IntBox:
    """The integer square that a cell crop is cut from.

    The side is ``side`` if given (one physical scale: a fixed number of the image's median cell
    diameters, so that cell size survives the resize and full-size and reduced frames give alike
    crops), else ``max(w, h) * (1 + 2 * margin)``: the box's longer side plus ``margin`` times it on
    each side, every cell at the same scale relative to its crop. Rounded half up, at least 1. The square is centred on the box, then shifted (not shrunk) to lie
    inside the image, so border cells keep real pixels instead of padding; it therefore still contains
    the whole box (to within the rounding of side and centre, under one pixel). Only along an axis
    shorter than the side does it leave the image: it then covers the whole axis and the excess (padded
    by :func:`crop_and_resize`) is split evenly, one more pixel after.

    Args:
        box_xyxy: (x0, y0, x1, y1) in pixels, continuous coordinates.
        image_hw: (height, width) of the image.
        margin: relative margin, >= 0 (without ``side``).
        side: the square's side in pixels.

    Returns:
        (x0, y0, x1, y1) integers with ``x1 - x0 == y1 - y0``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    height, width = int(image_hw[0]), int(image_hw[1])
    if side is None:
        side = max(x1 - x0, y1 - y0, 0.0) * (1 + 2 * margin)
    side = max(1, _round_half_up(side))
    left = _square_axis(x0, x1, side, width)
    top = _square_axis(y0, y1, side, height)
    return left, top, left + side, top + side


def crop_side(crop_diameters: float, cell_diameter: Optional[float]) -> Optional[float]:
    """The fixed crop side (pixels) for crops of ``crop_diameters`` median cells in an image whose median
    cell is ``cell_diameter`` pixels; None (side from each box) when ``crop_diameters`` is 0."""
    if crop_diameters <= 0:
        return None
    if not cell_diameter or cell_diameter <= 0:
        raise InputError("the classifier cuts crops of a fixed number of cell diameters (INPUT.CROP_DIAMETERS) "
                         "but the image's median cell diameter is not known: give --cell-diameter PX")
    return crop_diameters * cell_diameter


def crop_and_resize(image: np.ndarray, box_xyxy: Sequence[float], margin: float, size: int,
                    pad_value: float = 0, side: Optional[float] = None) -> np.ndarray:
    """Cut the :func:`square_crop_box` of an HxW or HxWxC image and resize it once to ``size`` x ``size``.

    Resampling is ``cv2.INTER_AREA`` (each output pixel averages the input area it covers: no aliasing
    when shrinking whole cells); pixels outside the image, present only when the square is longer than
    an image side, are ``pad_value``. The dtype and channel order of ``image`` are kept.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = square_crop_box(box_xyxy, (height, width), margin, side)
    patch = image[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
    top, bottom, left, right = max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width)
    if top or bottom or left or right:
        patch = cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(pad_value,) * 4)
    resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return resized.reshape((size, size) + image.shape[2:])
