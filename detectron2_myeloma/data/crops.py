"""Square cell crops: the one definition shared by the crop-dataset builder and detector-time inference.

A classifier only transfers from training to inference if both see identically made crops, so the
geometry (:func:`square_crop_box`) and the resampling (area averaging, resized once) live here, with a
numpy/OpenCV version for building crops and a torch version for boxes on the detector's device.

Coordinates are Detectron2's: continuous XYXY where pixel ``i`` covers ``[i, i + 1)``. Integer boxes are
half-open: ``[x0, x1) x [y0, y1)``.
"""
import functools
import math
from typing import Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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


def square_crop_box(box_xyxy: Sequence[float], image_hw: Sequence[int], margin: float) -> IntBox:
    """The integer square that a cell crop is cut from.

    The side is ``max(w, h) * (1 + 2 * margin)`` rounded half up (at least 1): the box's longer side plus
    ``margin`` times it on each side, so the cell keeps some context and its scale relative to the crop
    is the same for every cell. The square is centred on the box, then shifted (not shrunk) to lie
    inside the image, so border cells keep real pixels instead of padding; it therefore still contains
    the whole box (to within the rounding of side and centre, under one pixel). Only along an axis
    shorter than the side does it leave the image: it then covers the whole axis and the excess (padded
    by :func:`crop_and_resize`) is split evenly, one more pixel after.

    Args:
        box_xyxy: (x0, y0, x1, y1) in pixels, continuous coordinates.
        image_hw: (height, width) of the image.
        margin: relative margin, >= 0.

    Returns:
        (x0, y0, x1, y1) integers with ``x1 - x0 == y1 - y0``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    height, width = int(image_hw[0]), int(image_hw[1])
    side = max(1, _round_half_up(max(x1 - x0, y1 - y0, 0.0) * (1 + 2 * margin)))
    left = _square_axis(x0, x1, side, width)
    top = _square_axis(y0, y1, side, height)
    return left, top, left + side, top + side


def _padding(crop: IntBox, height: int, width: int) -> Tuple[int, int, int, int]:
    """Pixels outside the image on the (top, bottom, left, right) of an integer crop box."""
    x0, y0, x1, y1 = crop
    return max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width)


def crop_and_resize(image: np.ndarray, box_xyxy: Sequence[float], margin: float, size: int,
                    pad_value: float = 0) -> np.ndarray:
    """Cut the :func:`square_crop_box` of an HxW or HxWxC image and resize it once to ``size`` x ``size``.

    Resampling is ``cv2.INTER_AREA`` (each output pixel averages the input area it covers: no aliasing
    when shrinking whole cells); pixels outside the image, present only when the square is longer than
    an image side, are ``pad_value``. The dtype and channel order of ``image`` are kept.
    """
    height, width = image.shape[:2]
    crop = square_crop_box(box_xyxy, (height, width), margin)
    x0, y0, x1, y1 = crop
    patch = image[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
    top, bottom, left, right = _padding(crop, height, width)
    if top or bottom or left or right:
        patch = cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(pad_value,) * 4)
    resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return resized.reshape((size, size) + image.shape[2:])


def _area_weights(length: int, size: int) -> np.ndarray:
    """(size, length) matrix of cv2.INTER_AREA along one axis (see :func:`area_resize`)."""
    inv_scale = size / length
    scale = 1.0 / inv_scale  # computed as OpenCV does, so that its float edge cases are the same
    weights = np.zeros((size, length))
    for dx in range(size):
        if scale >= 1:  # shrinking: computeResizeAreaTab
            lo = dx * scale
            hi = lo + scale
            cell = min(scale, length - lo)
            first, last = math.ceil(lo), math.floor(hi)
            last = min(last, length - 1)
            first = min(first, last)
            if first - lo > 1e-3:
                weights[dx, first - 1] = (first - lo) / cell
            weights[dx, first:last] = 1.0 / cell
            if hi - last > 1e-3:
                weights[dx, last] = min(hi - last, 1.0, cell) / cell
        else:  # enlarging: linear interpolation with area fractions
            sx = math.floor(dx * scale)
            fx = float(np.float32((dx + 1) - (sx + 1) * inv_scale))
            fx = 0.0 if fx <= 0 else fx - math.floor(fx)
            if sx >= length - 1:
                sx, fx = length - 1, 0.0
            weights[dx, sx] += 1.0 - fx
            if fx:
                weights[dx, sx + 1] += fx
    return weights


@functools.lru_cache(maxsize=256)
def _area_band(length: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The nonzero band of :func:`_area_weights`: (size, K) input indices and weights, K = widest row.
    Each output pixel reads a few contiguous input pixels, so applying the band costs O(length * size *
    K) instead of the dense matrix's O(length^2 * size); cached, as detections share few sizes."""
    weights = _area_weights(length, size)
    nonzero = weights != 0
    first = nonzero.argmax(axis=1)
    last = length - 1 - nonzero[:, ::-1].argmax(axis=1)
    index = first[:, None] + np.arange(int((last - first).max()) + 1)[None, :]
    inside = index < length
    index = np.where(inside, index, length - 1)
    values = np.where(inside, np.take_along_axis(weights, index, axis=1), 0.0)
    return index, values


def area_resize(patch: torch.Tensor, size: int) -> torch.Tensor:
    """``cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)`` of a float (C, L, L) tensor.

    Shrinking, output pixel ``i`` averages the input interval ``[i * s, (i + 1) * s)``, ``s = L / size``,
    weighting each input pixel by its overlap (OpenCV drops overlaps under 1e-3 pixel); enlarging,
    OpenCV interpolates linearly between two pixels with those same overlap fractions. The weights are
    OpenCV's, computed with its float arithmetic, so that even its edge cases (an output pixel landing
    exactly on an input pixel boundary) pick the same pixels.
    """
    index, values = _area_band(patch.shape[-1], size)
    index = torch.as_tensor(index, device=patch.device)
    values = torch.as_tensor(values, dtype=patch.dtype, device=patch.device)
    rows = (patch[:, index, :] * values[None, :, :, None]).sum(dim=2)
    return (rows[:, :, index] * values[None, None]).sum(dim=-1)


def crop_and_resize_batch(image: torch.Tensor, boxes_xyxy: Union[torch.Tensor, np.ndarray], margin: float,
                          size: int, pad_value: float = 0) -> torch.Tensor:
    """:func:`crop_and_resize` for many boxes of one CxHxW image tensor, on the image's device.

    Returns an (N, C, size, size) float32 tensor. For a uint8 image the values are rounded as OpenCV
    rounds its uint8 output, so crops equal the saved training crops up to OpenCV's fixed-point
    rounding (at most 1 grey level). Boxes are in the image's pixel coordinates.
    """
    if image.dim() != 3:
        raise ValueError(f"image must be CxHxW, got shape {tuple(image.shape)}")
    channels, height, width = image.shape
    boxes = torch.as_tensor(boxes_xyxy).detach().reshape(-1, 4).cpu().tolist()
    crops = []
    for box in boxes:
        crop = square_crop_box(box, (height, width), margin)
        x0, y0, x1, y1 = crop
        patch = image[:, max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)].float().contiguous()
        top, bottom, left, right = _padding(crop, height, width)
        if top or bottom or left or right:
            patch = F.pad(patch, (left, right, top, bottom), value=float(pad_value))
        crops.append(area_resize(patch, size))
    if not crops:
        return torch.zeros((0, channels, size, size), device=image.device)
    out = torch.stack(crops)
    if image.dtype == torch.uint8:
        out = out.round().clamp(0, 255)
    return out
