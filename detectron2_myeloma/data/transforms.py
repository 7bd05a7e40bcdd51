"""Augmentations cells need that Detectron2 lacks: exact 90-degree rotations and stain (hue) jitter.

Cells have no canonical orientation, so a 90-degree rotation is as valid a sample as a flip; doing it
with ``np.rot90`` keeps masks exact (no interpolation), unlike a general ``RotationTransform``.
"""
import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import NoOpTransform, Transform


class Rot90Transform(Transform):
    """Rotate by k * 90 degrees counter-clockwise (as ``np.rot90``) an image of size h x w."""

    def __init__(self, h: int, w: int, k: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(img, self.k))

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
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
        k = int(np.random.randint(4))
        return Rot90Transform(image.shape[0], image.shape[1], k) if k else NoOpTransform()


class HueShiftTransform(Transform):
    """Shift hue by ``delta`` (OpenCV hue units, 0..180) on an RGB/BGR uint8 image: stain variation."""

    def __init__(self, delta: float, image_format: str):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        to_hsv, from_hsv = ((cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if self.image_format == "RGB"
                            else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR))
        hsv = cv2.cvtColor(img.astype(np.uint8), to_hsv)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(round(self.delta))) % 180).astype(np.uint8)
        return cv2.cvtColor(hsv, from_hsv)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class RandomHueShift(T.Augmentation):
    """Hue shift drawn uniformly from [-max_delta, max_delta] (OpenCV hue units)."""

    def __init__(self, max_delta: float, image_format: str = "RGB"):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        delta = np.random.uniform(-self.max_delta, self.max_delta)
        return HueShiftTransform(delta, self.image_format)
