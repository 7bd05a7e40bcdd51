"""Negatives of the crop folder: nucleated cells in the SegPC images that no annotation covers.

SegPC-2021 annotates only myeloma plasma cells, so the other nucleated cells of the same images
(lymphocytes, neutrophils, erythroblasts...) are the natural negatives. They are found by a
nucleus-stain heuristic, sized by :class:`CellSizePrior`, and, optionally, by a trained detector whose
detections match no annotation (hard negatives: exactly the mistakes a classifier behind the detector
must fix). The detector is any :data:`BoxPredictor`, e.g.
:func:`detectron2_myeloma.engine.box_predictor.box_predictor`.
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.structures import BoxMode, Boxes, pairwise_iou
from torchvision.ops import nms

from ..data.masks import rle_to_mask

# BGR image -> (N, 4) XYXY boxes; of two overlapping ones the first is kept (DefaultPredictor: best first).
BoxPredictor = Callable[[np.ndarray, Optional[float]], np.ndarray]  # (image BGR, cell diameter) -> boxes


@dataclass(frozen=True)
class CellSizePrior:
    """Sizes of annotated cells, used to tell a stained nucleus blob from debris or a nucleus cluster.

    Attributes:
        min_nucleus_area, max_nucleus_area: accepted blob areas in full-resolution pixels (the annotated
            nuclei's range widened by ``AREA_SLACK``).
        cell_scale: median sqrt(cell area / nucleus area): a nucleus box grown by this gives a cell-sized
            box, so negatives are cropped at the scale of positives (and of detector boxes).
        work_scale: resize factor that makes the median nucleus ~``WORK_NUCLEUS_DIAMETER`` px across:
            the heuristic runs at this scale, fast and with fixed kernel sizes.
    """

    min_nucleus_area: float
    max_nucleus_area: float
    cell_scale: float
    work_scale: float

    AREA_SLACK = (0.5, 1.5)
    WORK_NUCLEUS_DIAMETER = 50.0

    @classmethod
    def from_dataset(cls, dataset_dicts: Sequence[dict]) -> "CellSizePrior":
        """Measure annotated cells that have a ``nucleus`` mask (SegPC readers add one per cell)."""
        nucleus, cell = [], []
        for record in dataset_dicts:
            for ann in record.get("annotations", []):
                if "nucleus" in ann:
                    nucleus.append(float(rle_to_mask(ann["nucleus"]).sum()))
                    cell.append(float(rle_to_mask(ann["segmentation"]).sum()))
        nucleus_areas, cell_areas = np.array(nucleus), np.array(cell)
        keep = nucleus_areas > 0
        if not keep.any():
            raise ValueError("the stain heuristic needs cells with nucleus masks (SegPC annotations); "
                             "none found (turn the heuristic off to use detector negatives only)")
        nucleus_areas, cell_areas = nucleus_areas[keep], cell_areas[keep]
        median_diameter = 2 * math.sqrt(float(np.median(nucleus_areas)) / math.pi)
        return cls(
            min_nucleus_area=float(nucleus_areas.min()) * cls.AREA_SLACK[0],
            max_nucleus_area=float(nucleus_areas.max()) * cls.AREA_SLACK[1],
            cell_scale=float(np.median(np.sqrt(cell_areas / nucleus_areas))),
            work_scale=min(1.0, cls.WORK_NUCLEUS_DIAMETER / median_diameter),
        )


def stain_map(image_bgr: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 BGR image -> HxW uint8 B - G, clipped to uint8: high on the blue-purple
    haematoxylin/Giemsa stain of nuclei, low on the pale background, pink red cells and black debris (on
    SegPC: nuclei ~97, cytoplasm ~33, background ~13)."""
    image = image_bgr.astype(np.int16)
    return np.clip(image[..., 0] - image[..., 1], 0, 255).astype(np.uint8)


def _nucleus_threshold(stain: np.ndarray) -> float:
    """Two-level Otsu: the first splits stained from background, the second splits the stained
    pixels into cytoplasm and nucleus; one level alone merges cells that touch through cytoplasm."""
    first, _ = cv2.threshold(stain, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    stained = stain[stain > first]
    if stained.size == 0:
        return float(first)
    second, _ = cv2.threshold(stained.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(max(first, second))


def find_nucleus_blobs(image_bgr: np.ndarray, prior: CellSizePrior,
                       min_solidity: float = 0.85) -> List[Tuple[np.ndarray, Tuple[float, float]]]:
    """Stained blobs of nucleus size in an HxWx3 uint8 BGR image: [(nucleus box, centroid (x, y))], the
    box a (4,) float64 XYXY array, both in full-resolution pixels.

    Blobs are thresholded on the blurred :func:`stain_map` at ``prior.work_scale``, cleaned by a
    morphological open (specks) and close (pale chromatin holes), and kept when their area is within
    the prior and their solidity (area / convex hull area) is at least ``min_solidity``: two touching
    nuclei form a non-convex blob, which would give a box centred between two cells.
    """
    scale = prior.work_scale
    small = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    stain = cv2.GaussianBlur(stain_map(small), (5, 5), 0)
    binary = (stain > _nucleus_threshold(stain)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    binary = cv2.morphologyEx(cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary)
    lo, hi = prior.min_nucleus_area * scale ** 2, prior.max_nucleus_area * scale ** 2
    blobs = []
    for i in range(1, count):
        x, y, w, h, area = stats[i]
        if not lo <= area <= hi:
            continue
        contours, _ = cv2.findContours((labels[y:y + h, x:x + w] == i).astype(np.uint8),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
        if area < min_solidity * max(hull_area, 1.0):
            continue
        box = np.array([x, y, x + w, y + h], dtype=np.float64) / scale
        blobs.append((box, (float(centroids[i][0] / scale), float(centroids[i][1] / scale))))
    return blobs


def annotation_boxes(annotations: Sequence[dict]) -> np.ndarray:
    """(N, 4) float64 XYXY boxes, in image pixels, of N Detectron2 annotations."""
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def max_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N, 4) XYXY ``boxes`` and (M, 4) XYXY ``others`` -> (N,) largest IoU of each box with any of
    ``others``, float32 (zeros when either is empty)."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros(len(boxes), dtype=np.float32)
    iou = pairwise_iou(Boxes(torch.as_tensor(boxes, dtype=torch.float32)),
                       Boxes(torch.as_tensor(others, dtype=torch.float32)))
    return iou.max(dim=1).values.numpy()


def grow_box(box: np.ndarray, factor: float, image_hw: Sequence[int]) -> np.ndarray:
    """A (4,) XYXY ``box`` scaled by ``factor`` about its centre, clipped to an image of ``image_hw`` (H, W):
    a (4,) float array (float64 for a float64 box, as :func:`find_nucleus_blobs` gives)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    height, width = image_hw
    return np.array([max(cx - half_w, 0), max(cy - half_h, 0),
                     min(cx + half_w, width), min(cy + half_h, height)])


def stain_negatives(image_bgr: np.ndarray, annotations: Sequence[dict], prior: CellSizePrior,
                    iou_threshold: float = 0.3) -> np.ndarray:
    """Cell-sized (N, 4) float64 XYXY boxes around stained nuclei of an HxWx3 uint8 BGR image that belong
    to no annotated cell.

    A blob is kept when its centroid lies outside every annotated mask AND its cell box (the nucleus
    box grown by ``prior.cell_scale``) has IoU < ``iou_threshold`` with every annotated cell box.
    """
    height, width = image_bgr.shape[:2]
    annotated = np.zeros((height, width), dtype=bool)
    for ann in annotations:
        annotated |= rle_to_mask(ann["segmentation"])
    boxes = []
    for nucleus_box, (cx, cy) in find_nucleus_blobs(image_bgr, prior):
        if annotated[min(int(cy), height - 1), min(int(cx), width - 1)]:
            continue
        boxes.append(grow_box(nucleus_box, prior.cell_scale, (height, width)))
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[max_iou(boxes, annotation_boxes(annotations)) < iou_threshold]


def detector_negatives(predictor: BoxPredictor, image_bgr: np.ndarray, annotations: Sequence[dict],
                       iou_threshold: float = 0.3, cell_diameter: Optional[float] = None) -> np.ndarray:
    """Detections (at the image's ``cell_diameter``, the record's) with IoU < ``iou_threshold`` against
    every annotated cell: hard negatives, (N, 4) float64 XYXY boxes in the HxWx3 uint8 BGR image's pixels,
    in the predictor's order."""
    boxes = np.asarray(predictor(image_bgr, cell_diameter), dtype=np.float64).reshape(-1, 4)
    return boxes[max_iou(boxes, annotation_boxes(annotations)) < iou_threshold]


def drop_duplicates(boxes: np.ndarray, kept: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """``boxes`` without those that overlap a ``kept`` box, or an earlier box of ``boxes``, at IoU >=
    ``iou_threshold``: one crop per cell, the first found winning (greedy NMS in the given order).

    (N, 4) XYXY ``boxes`` and (K, 4) ``kept`` -> the (N', 4) boxes kept, in their order and dtype."""
    boxes = boxes.reshape(-1, 4)[max_iou(boxes.reshape(-1, 4), kept.reshape(-1, 4)) < iou_threshold]
    # nms keeps boxes by decreasing score and drops IoU > threshold: scores give the order, and the
    # float just below the threshold makes the drop IoU >= threshold.
    order = -torch.arange(len(boxes), dtype=torch.float32)
    keep = nms(torch.as_tensor(boxes, dtype=torch.float32), order, math.nextafter(iou_threshold, 0))
    return boxes[keep.sort().values.numpy()]
