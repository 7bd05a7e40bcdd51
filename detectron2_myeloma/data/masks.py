"""Binary masks <-> Detectron2 annotations with COCO RLE segmentation (lossless, no polygons)."""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """Encode a HxW mask (its nonzero pixels: bool, 0/1 or a 0/20/40 SegPC mask) as COCO RLE,
    ``{"size": [H, W], "counts": str}``, the ``counts`` string JSON-serialisable. pycocotools takes 0/1
    only: another value would start a run wherever it changes."""
    rle = mask_util.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed, string or bytes counts) to a HxW bool mask, (H, W) =
    ``rle["size"]``."""
    if isinstance(rle["counts"], list):  # uncompressed RLE
        rle = mask_util.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_util.decode(rle).astype(bool)


def rle_area(rle: Dict[str, Any]) -> float:
    """Pixel count of a compressed RLE (string or bytes counts)."""
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return float(mask_util.area({"size": rle["size"], "counts": counts}))


def annotation_from_mask(mask: np.ndarray, category_id: int, **extra: Any) -> Optional[Dict[str, Any]]:
    """A Detectron2 instance annotation for one HxW bool mask, or None when the mask is empty: its
    tight ``bbox`` (XYWH_ABS, floats), RLE ``segmentation`` and ``area`` (pixels, float).

    ``extra`` keys (links between annotations, provenance) are kept as they are.
    """
    if not mask.any():
        return None
    rle = mask_to_rle(mask)
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    return {
        "bbox": bbox,
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": int(category_id),
        "segmentation": rle,
        "area": float(mask_util.area(rle)),
        "iscrowd": 0,
        **extra,
    }


def size_mismatch(mask_hw: Sequence[int], image_hw: Sequence[int]) -> str:
    """The error text for a mask whose size differs from its image's."""
    return (f"mask is {mask_hw[1]}x{mask_hw[0]} but its image is {image_hw[1]}x{image_hw[0]} "
            "(width x height)")
