"""Square cell crops: the one function that cuts them, for the crop folder and for the post-hook.

A classifier only transfers from training to inference if both see identically made crops, so both cut
them with :func:`crop_and_resize` (geometry :func:`square_crop_box`, OpenCV area resampling, resized
once) from the full-resolution image on the CPU: the crops the hook classifies are bit-identical to
the saved training crops.

Every crop is centred on its cell, at a frame edge too: the part of the square outside the image is
padded (:func:`pad_colour`), never filled by shifting the square inward, which would put the cell off
centre and give neighbouring cells one shared window (issue 30).

Coordinates are Detectron2's: continuous XYXY where pixel ``i`` covers ``[i, i + 1)``. Integer boxes are
half-open: ``[x0, x1) x [y0, y1)``.
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..structures import round_half_up
from ..utils.errors import InputError

# How crops are placed and padded, written to a crop folder's crops.json and checked against the
# classifier's crops (trainer.check_crop_params): folders without it were cut by the earlier code, whose
# squares were shifted inside the image at its borders.
CROP_PLACEMENT = "centred; outside the image: the median colour of the brighter half of the square's pixels"

IntBox = Tuple[int, int, int, int]


def _square_axis(lo: float, hi: float, side: int, length: int) -> int:
    """Start of a ``side``-long window centred on ``[lo, hi)`` (rounded half up). The centre is first
    held within ``[0.5, length - 0.5]``, which moves no real cell's centre but keeps at least the pixel
    under the centre inside ``[0, length)`` for a degenerate box on or beyond the border."""
    centre = min(max((lo + hi) / 2, 0.5), length - 0.5)
    return round_half_up(centre - side / 2)


def square_crop_box(box_xyxy: Sequence[float], image_hw: Sequence[int], margin: float,
                    side: Optional[float] = None) -> IntBox:
    """The integer square that a cell crop is cut from.

    The side is ``side`` if given (one physical scale: a fixed number of the image's median cell
    diameters, so that cell size survives the resize and full-size and reduced frames give alike
    crops), else ``max(w, h) * (1 + 2 * margin)``: the box's longer side plus ``margin`` times it on
    each side, every cell at the same scale relative to its crop. Rounded half up, at least 1. The
    square is centred on the box (its centre within half a pixel of the box's), wherever the box lies:
    near a border it leaves the image, and :func:`crop_and_resize` pads the part outside. It therefore
    contains the whole box (to within the rounding of side and centre, under one pixel).

    Args:
        box_xyxy: (x0, y0, x1, y1) in pixels, continuous coordinates.
        image_hw: (height, width) of the image.
        margin: relative margin, >= 0 (without ``side``).
        side: the square's side in pixels.

    Returns:
        (x0, y0, x1, y1) integers with ``x1 - x0 == y1 - y0``; may reach outside the image.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    height, width = int(image_hw[0]), int(image_hw[1])
    if side is None:
        side = max(x1 - x0, y1 - y0, 0.0) * (1 + 2 * margin)
    side = max(1, round_half_up(side))
    left = _square_axis(x0, x1, side, width)
    top = _square_axis(y0, y1, side, height)
    return left, top, left + side, top + side


def pad_colour(pixels: np.ndarray) -> Tuple[float, ...]:
    """The colour that pads a crop where its square leaves the image: per channel, the median of the
    brighter half of ``pixels`` (the square's part inside the image, HxW or HxWxC), brightness being
    the plain mean of the channels; rounded half up for integer images.

    Why: between cells a smear is light, empty slide, and the brighter half of a 2-diameter square is
    mostly that background (the cell and its neighbours are the stained, darker part), so the pad reads
    as the frame going on with empty slide in this image's own colour (Olympus and Nikon backgrounds
    differ by ~30 levels). Black, or a fixed colour, would be a hard, unnatural edge; reflecting or
    replicating the border invents tissue (a mirrored half cell looks whole; replicated rows are
    streaks). The value depends only on the square's own pixels and treats channels alike, so training
    crops (BGR) and the hook's (RGB) stay bit-identical, and a tile that holds the square gives the same.

    ``pixels`` may be of any dtype (uint8 for the project's images); the result is one float per channel
    (C of them, one for an HxW array), whole numbers for an integer dtype.
    """
    if pixels.shape[0] * pixels.shape[1] == 0:
        raise ValueError("no pixel of the square lies inside the image")
    channels = pixels.reshape(pixels.shape[0] * pixels.shape[1], -1)
    integer = np.issubdtype(pixels.dtype, np.integer)
    brightness = channels.sum(axis=1, dtype=np.int64 if integer else np.float64)  # exact, in any order
    bright = channels[brightness >= np.median(brightness)]
    value = np.median(bright, axis=0)
    if integer:
        value = np.floor(value + 0.5)
    return tuple(float(v) for v in value)


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
                    side: Optional[float] = None) -> np.ndarray:
    """Cut the :func:`square_crop_box` of an HxW or HxWxC image and resize it once to ``size`` x ``size``.

    Resampling is ``cv2.INTER_AREA`` (each output pixel averages the input area it covers: no aliasing
    when shrinking whole cells); pixels of the square outside the image are one flat colour,
    :func:`pad_colour` of the pixels inside. The dtype and channel order of ``image`` are kept.

    Args:
        image: HxW or HxWxC array (the project's: HxWx3 uint8, BGR or RGB).
        box_xyxy: (x0, y0, x1, y1) of the cell in ``image``'s pixels, continuous coordinates.

    Returns:
        (size, size) or (size, size, C) array of ``image``'s dtype.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = square_crop_box(box_xyxy, (height, width), margin, side)
    patch = image[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
    top, bottom, left, right = max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width)
    if top or bottom or left or right:
        value = pad_colour(patch)
        patch = cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                   value=(value + value[-1:] * 4)[:4])
    resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return resized.reshape((size, size) + image.shape[2:])
