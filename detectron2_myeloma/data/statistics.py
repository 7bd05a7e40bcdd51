"""Instance counts and object sizes of a dataset: what anchor sizes and input scales are chosen from."""
from typing import Dict, List, Sequence, Union

import numpy as np

from .masks import rle_area

PERCENTILES = (5, 25, 50, 75, 95)


def instance_size_summary(dicts: Sequence[dict], thing_classes: Sequence[str]) -> Dict[str, dict]:
    """Per class: instances per image and the distribution of box side / equivalent diameter (pixels).

    The equivalent diameter sqrt(4 * area / pi) is the side an anchor should roughly match.
    """
    per_image = [len(d["annotations"]) for d in dicts]
    summary: Dict[str, dict] = {"images": {"count": len(dicts), **_describe(per_image, "instances")}}
    for cid, name in enumerate(thing_classes):
        anns = [a for d in dicts for a in d["annotations"] if a["category_id"] == cid]
        if not anns:
            continue
        widths = [a["bbox"][2] for a in anns]  # dataset dicts of this project are XYWH_ABS
        heights = [a["bbox"][3] for a in anns]
        diameters = [equivalent_diameter(a) for a in anns]
        summary[name] = {"count": len(anns), **_describe(diameters, "diameter"),
                         **_describe(widths, "box_width"), **_describe(heights, "box_height")}
    return summary


def median_cell_diameter(dicts: Sequence[dict], category_id: int = 0) -> float:
    """Median equivalent diameter (pixels) of the ``category_id`` instances: a dataset's cell scale, as
    cellpose's ``diameter`` is an image's."""
    diameters = [equivalent_diameter(a) for d in dicts for a in d["annotations"] if a["category_id"] == category_id]
    if not diameters:
        raise ValueError(f"no instances of category {category_id} to measure")
    return float(np.median(diameters))


def equivalent_diameter(annotation: dict) -> float:
    """Diameter of the disc with the annotation's mask area, in pixels."""
    return float(area_diameter(rle_area(annotation["segmentation"])))


def area_diameter(area: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
    """Diameter of the disc of ``area`` pixels: the one definition of a cell's diameter, for the
    datasets' cell scales and for what is measured of detected cells. Returns float64 in ``area``'s
    shape (a numpy float64 scalar for a number)."""
    return np.sqrt(4 * np.asarray(area, dtype=np.float64) / np.pi)


def _describe(values: List[float], prefix: str) -> Dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    out = {f"{prefix}_mean": float(arr.mean()), f"{prefix}_min": float(arr.min()),
           f"{prefix}_max": float(arr.max())}
    out.update({f"{prefix}_p{p}": float(np.percentile(arr, p)) for p in PERCENTILES})
    return out
