"""Augmentations cells need that Detectron2 lacks: exact 90-degree rotations, and the colour jitter
(stain and illumination) that the detector shares with the cell classifier.

Cells have no canonical orientation, so a 90-degree rotation is as valid a sample as a flip; doing it
with ``np.rot90`` keeps masks exact (no interpolation), unlike a general ``RotationTransform``.
"""
import functools
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from fvcore.transforms.transform import NoOpTransform, Transform
from torchvision.transforms import v2


class Rot90Transform(Transform):
    """Rotate by k * 90 degrees counter-clockwise (as ``np.rot90``) an image of size h x w."""

    def __init__(self, h: int, w: int, k: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """h x w (x C) array, any dtype -> the rotated copy, w x h (x C) for odd ``k``, contiguous."""
        return np.ascontiguousarray(np.rot90(img, self.k))

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """An h x w mask rotated as the image, exactly (no interpolation)."""
        return self.apply_image(segmentation)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) XY pixel-edge coordinates in the h x w image (box corners, polygon points) -> their (N, 2)
        XY in the rotated image, in the input's dtype."""
        # Pixel-edge coordinates: one ccw turn maps (x, y) in a w-wide image to (y, w - x).
        x, y = coords[:, 0].copy(), coords[:, 1].copy()
        h, w = self.h, self.w
        for _ in range(self.k % 4):
            x, y = y, w - x
            h, w = w, h
        return np.stack([x, y], axis=1)

    def inverse(self) -> Transform:
        k = self.k % 4
        h, w = (self.w, self.h) if k % 2 else (self.h, self.w)
        return Rot90Transform(h, w, (4 - k) % 4)


class RandomRot90(T.Augmentation):
    """Rotate by a uniformly chosen multiple of 90 degrees."""

    def get_transform(self, image: np.ndarray) -> Transform:
        """A rotation of the HxW(xC) ``image`` (only its size is read), or no-op for k = 0."""
        k = int(np.random.randint(4))
        return Rot90Transform(image.shape[0], image.shape[1], k) if k else NoOpTransform()


class CellAugInput(T.AugInput):
    """Detectron2's ``AugInput`` that also carries the image's median cell diameter in pixels, so that
    :class:`ResizeToCellDiameter` receives it by name (as Detectron2 hands ``boxes`` or ``sem_seg`` to
    the augmentations that ask for them). The diameter is decided once per image, before any
    augmentation: by the dataset record in training, by the predictor at inference."""

    def __init__(self, image: np.ndarray, *, cell_diameter: Optional[float] = None, **kwargs):
        """``image``: HxWxC (HxWx3 uint8 from the mapper); ``kwargs``: ``AugInput``'s ``boxes`` and
        ``sem_seg``."""
        super().__init__(image, **kwargs)
        self.cell_diameter = cell_diameter


class ResizeToCellDiameter(T.Augmentation):
    """Resize an image so that its cells (the input's ``cell_diameter`` pixels, see
    :class:`CellAugInput`) span one of ``targets`` pixels, drawn uniformly when there are several."""

    def __init__(self, targets: Sequence[float]):
        super().__init__()
        if not targets or min(targets) <= 0:
            raise ValueError(f"cell diameter targets must be positive, got {tuple(targets)}")
        self._init(locals())

    def get_transform(self, image: np.ndarray, cell_diameter: Optional[float]) -> Transform:
        """Resize of the HxW(xC) ``image`` (only its size is read) to ``round(H * s)`` x ``round(W * s)``,
        at least 1, s = the drawn target / ``cell_diameter``; ValueError without a diameter."""
        if not cell_diameter or cell_diameter <= 0:
            raise ValueError(f"resizing by cell size needs the image's cell diameter, got {cell_diameter}")
        height, width = image.shape[:2]
        target = self.targets[int(np.random.randint(len(self.targets)))]
        scale = float(target) / float(cell_diameter)
        return T.ResizeTransform(height, width, max(1, round(height * scale)), max(1, round(width * scale)))


# The one default hue (stain) jitter of the detector's and the classifier's cells: up to +-4/180 of the
# hue circle (4 of OpenCV's 180 hue steps).
STAIN_HUE_SHIFT = 0.022


def build_color_jitter(aug: CfgNode, key: str) -> Optional[v2.ColorJitter]:
    """The photometric jitter of a config node with BRIGHTNESS, CONTRAST, SATURATION and HUE: one
    definition (torchvision's ``ColorJitter``), and so one meaning of the keys, for the detector's
    ``INPUT.CELL_AUG`` and the classifier's ``AUG``. None when all four are 0; ``key`` names the node."""
    if not 0 <= aug.HUE <= 0.5:
        raise ValueError(f"{key}.HUE must be a fraction of the hue circle in [0, 0.5], got {aug.HUE} (an "
                         "OpenCV hue shift of h, out of 180, is h / 180)")
    amounts = {"brightness": aug.BRIGHTNESS, "contrast": aug.CONTRAST, "saturation": aug.SATURATION,
               "hue": aug.HUE}
    return v2.ColorJitter(**amounts) if any(amounts.values()) else None


def _jitter_image(jitter: v2.ColorJitter, params: Dict[str, Any], image_format: str,
                  image: np.ndarray) -> np.ndarray:
    rgb = image[..., ::-1] if image_format == "BGR" else image
    out = jitter.transform(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1), params)
    out = out.permute(1, 2, 0).numpy()
    return np.ascontiguousarray(out[..., ::-1] if image_format == "BGR" else out)


class RandomColorJitter(T.Augmentation):
    """A torchvision ``ColorJitter`` (:func:`build_color_jitter`) as a Detectron2 augmentation of HxWx3
    uint8 images in ``image_format`` (RGB or BGR): its factors and their order are drawn per image from
    torch's generator (which Detectron2 seeds in every data-loader worker), boxes and masks unchanged."""

    def __init__(self, jitter: v2.ColorJitter, image_format: str = "RGB"):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        """A colour transform of HxWx3 uint8 images (uint8 out), its factors and their order drawn now;
        ``image`` is not read."""
        params = self.jitter.make_params([])
        return T.ColorTransform(functools.partial(_jitter_image, self.jitter, params, self.image_format))
