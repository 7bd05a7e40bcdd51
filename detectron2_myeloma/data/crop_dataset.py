"""Myeloma / non-myeloma cell crops from a cell-segmentation dataset, for the cell classifier.

SegPC-2021 annotates only myeloma plasma cells, so every annotated cell is a positive and the other
nucleated cells in the same images (lymphocytes, neutrophils, erythroblasts...) are the natural
negatives. They are found by a nucleus-stain heuristic and, optionally, by a trained detector whose
detections match no annotation (hard negatives: exactly the mistakes a classifier behind the
detector must fix). Every crop is cut by :func:`detectron2_myeloma.data.crops.crop_and_resize`, the
function used at inference.

Layout written by :func:`build_crop_dataset`::

    DIR/<split>/<myeloma|non_myeloma>/<image_id>_<n>.png   (BGR PNG, size x size)
    DIR/manifest.csv    one row per crop: path, split, image_id, source_image, x0, y0, x1, y1, label, source
    DIR/balance.json    crop counts per split, label and source
    DIR/crops.json      how the crops were made (margin, size, pad value, datasets, size prior)
"""
import csv
import hashlib
import json
import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.structures import BoxMode, Boxes, pairwise_iou
from torch.utils.data import Dataset

from .crops import crop_and_resize
from .masks import rle_to_mask

logger = logging.getLogger(__name__)

CLASS_NAMES = ("non_myeloma", "myeloma")  # label index = position; 1 is the positive class
MANIFEST_FIELDS = ("path", "split", "image_id", "source_image", "x0", "y0", "x1", "y1", "label", "source")

# Box predictor for hard negatives: BGR image -> (N, 4) XYXY boxes (e.g. a wrapped DefaultPredictor).
BoxPredictor = Callable[[np.ndarray], np.ndarray]


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
    """B - G, clipped to uint8: high on the blue-purple haematoxylin/Giemsa stain of nuclei, low on the
    pale background, pink red cells and black debris (on SegPC: nuclei ~97, cytoplasm ~33, background ~13)."""
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
    """Stained blobs of nucleus size: [(nucleus box XYXY, centroid (x, y))] in full-resolution pixels.

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
    """(N, 4) XYXY boxes of Detectron2 annotations."""
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def max_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each box, its largest IoU with any of ``others`` (0 when there are none)."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros(len(boxes))
    iou = pairwise_iou(Boxes(torch.as_tensor(boxes, dtype=torch.float32)),
                       Boxes(torch.as_tensor(others, dtype=torch.float32)))
    return iou.max(dim=1).values.numpy()


def grow_box(box: np.ndarray, factor: float, image_hw: Sequence[int]) -> np.ndarray:
    """``box`` scaled by ``factor`` about its centre, clipped to the image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    height, width = image_hw
    return np.array([max(cx - half_w, 0), max(cy - half_h, 0),
                     min(cx + half_w, width), min(cy + half_h, height)])


def stain_negatives(image_bgr: np.ndarray, annotations: Sequence[dict], prior: CellSizePrior,
                    iou_threshold: float = 0.3) -> np.ndarray:
    """Cell-sized (N, 4) XYXY boxes around stained nuclei that belong to no annotated cell.

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
                       iou_threshold: float = 0.3) -> np.ndarray:
    """Detections with IoU < ``iou_threshold`` against every annotated cell: hard negatives."""
    boxes = np.asarray(predictor(image_bgr), dtype=np.float64).reshape(-1, 4)
    return boxes[max_iou(boxes, annotation_boxes(annotations)) < iou_threshold]


def detectron2_box_predictor(config_file: str, weights: str, device: Optional[str] = None) -> BoxPredictor:
    """A trained project detector as a :data:`BoxPredictor` (Detectron2's ``DefaultPredictor``)."""
    from detectron2.engine import DefaultPredictor

    from ..config import load_config

    cfg = load_config(config_file, ["MODEL.WEIGHTS", weights])
    if device is not None:
        cfg.MODEL.DEVICE = device
    cfg.freeze()
    predictor = DefaultPredictor(cfg)

    def predict(image_bgr: np.ndarray) -> np.ndarray:
        return predictor(image_bgr)["instances"].pred_boxes.tensor.cpu().numpy()

    return predict


def _stable_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split_by_image(dataset_dicts: Sequence[dict], val_fraction: float) -> Tuple[List[dict], List[dict]]:
    """Deterministic split of whole images: the ``round(val_fraction * n)`` images (at least one when the
    fraction is > 0 and there are two images or more) with the smallest SHA-1 of their ``image_id``
    are val. Independent of input order, and an image never straddles the split."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(dataset_dicts, key=lambda r: _stable_hash(str(r["image_id"])))
    n_val = round(val_fraction * len(ordered))
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = max(n_val, 1)
    val_ids = {str(r["image_id"]) for r in ordered[:n_val]}
    return ([r for r in dataset_dicts if str(r["image_id"]) not in val_ids],
            [r for r in dataset_dicts if str(r["image_id"]) in val_ids])


def _dedup(boxes: np.ndarray, kept: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """``boxes`` without those overlapping an already kept box (or each other) at ``iou_threshold``."""
    out = kept.reshape(-1, 4)
    start = len(out)
    for box in boxes:
        if max_iou(box[None], out)[0] < iou_threshold:
            out = np.concatenate([out, box[None]])
    return out[start:]


def image_candidates(record: dict, image_bgr: np.ndarray, prior: Optional[CellSizePrior],
                     predictor: Optional[BoxPredictor], iou_threshold: float
                     ) -> List[Tuple[np.ndarray, int, str]]:
    """(box XYXY, label, source) of every crop of one image: annotated cells, then detector negatives,
    then stain negatives that duplicate no detector negative (IoU >= 0.5)."""
    annotations = record.get("annotations", [])
    found = [(box, 1, "annotation") for box in annotation_boxes(annotations)]
    negatives = np.zeros((0, 4))
    if predictor is not None:
        negatives = _dedup(detector_negatives(predictor, image_bgr, annotations, iou_threshold), negatives)
        found += [(box, 0, "detector") for box in negatives]
    if prior is not None:
        stain = _dedup(stain_negatives(image_bgr, annotations, prior, iou_threshold), negatives)
        found += [(box, 0, "stain_heuristic") for box in stain]
    return found


def build_crop_dataset(splits: Mapping[str, Sequence[dict]], output_dir: str, margin: float = 0.15,
                       size: int = 128, prior: Optional[CellSizePrior] = None,
                       predictor: Optional[BoxPredictor] = None, iou_threshold: float = 0.3,
                       pad_value: int = 0, info: Optional[dict] = None) -> dict:
    """Write the crops of every split (see the module docstring) and return the class balance.

    Args:
        splits: split name -> dataset dicts; no image may appear in two splits.
        prior: enables the stain heuristic (measure it on the training split).
        predictor: enables detector hard negatives.
        info: extra entries for ``crops.json`` (e.g. dataset names).
    """
    if prior is None and predictor is None:
        raise ValueError("no source of negatives: give a CellSizePrior (stain heuristic) or a predictor")
    owner: Dict[str, str] = {}
    for split, records in splits.items():
        for record in records:
            key = os.path.abspath(record["file_name"])
            if owner.setdefault(key, split) != split:
                raise ValueError(f"{record['file_name']} is in both split {owner[key]!r} and {split!r}")
    for split in splits:
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(output_dir, split, name), exist_ok=True)
    rows = []
    for split, records in splits.items():
        for record in records:
            image = cv2.imread(record["file_name"], cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read image {record['file_name']}")
            candidates = image_candidates(record, image, prior, predictor, iou_threshold)
            for n, (box, label, source) in enumerate(candidates):
                rel = os.path.join(split, CLASS_NAMES[label], f"{record['image_id']}_{n}.png")
                crop = crop_and_resize(image, box, margin, size, pad_value)
                cv2.imwrite(os.path.join(output_dir, rel), crop)
                rows.append({"path": rel, "split": split, "image_id": record["image_id"],
                             "source_image": record["file_name"],
                             **{k: f"{v:.2f}" for k, v in zip(("x0", "y0", "x1", "y1"), box)},
                             "label": CLASS_NAMES[label], "source": source})
            logger.info("%s: %d crops (%d myeloma)", record["file_name"], len(candidates),
                        sum(label for _, label, _ in candidates))
    with open(os.path.join(output_dir, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    balance = class_balance(rows, splits)
    with open(os.path.join(output_dir, "balance.json"), "w") as f:
        json.dump(balance, f, indent=2)
    with open(os.path.join(output_dir, "crops.json"), "w") as f:
        json.dump({"margin": margin, "size": size, "pad_value": pad_value, "iou_threshold": iou_threshold,
                   "prior": asdict(prior) if prior is not None else None,
                   "detector_negatives": predictor is not None, **(info or {})}, f, indent=2)
    return balance


def class_balance(rows: Sequence[Mapping[str, str]], splits: Mapping[str, Sequence[dict]]) -> dict:
    """Per split: images, crops per label and per source, and the myeloma fraction."""
    balance = {}
    for split, records in splits.items():
        mine = [r for r in rows if r["split"] == split]
        labels = Counter(r["label"] for r in mine)
        balance[split] = {
            "images": len(records),
            "crops": len(mine),
            "labels": {name: labels.get(name, 0) for name in CLASS_NAMES},
            "sources": dict(Counter(r["source"] for r in mine)),
            "myeloma_fraction": round(labels.get("myeloma", 0) / max(len(mine), 1), 4),
        }
    return balance


def read_manifest(crops_dir: str, split: Optional[str] = None) -> List[Dict[str, str]]:
    """Rows of ``crops_dir/manifest.csv``, optionally of one split."""
    with open(os.path.join(crops_dir, "manifest.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if split is None or r["split"] == split]


def read_crop_params(crops_dir: str) -> dict:
    """``crops.json`` of a crop folder: margin and size that inference must reuse."""
    with open(os.path.join(crops_dir, "crops.json")) as f:
        return json.load(f)


class CropDataset(Dataset):
    """One split of a crop folder as (uint8 RGB CxHxW tensor, label) pairs.

    ``transform`` (uint8 tensor -> tensor) runs on each crop, e.g. :class:`~detectron2_myeloma.engine.
    classifier_trainer.CropAugmentation`.
    """

    def __init__(self, crops_dir: str, split: str,
                 transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.crops_dir = crops_dir
        self.rows = read_manifest(crops_dir, split)
        self.labels = [CLASS_NAMES.index(r["label"]) for r in self.rows]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        path = os.path.join(self.crops_dir, self.rows[index]["path"])
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read crop {path}")
        crop = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
        if self.transform is not None:
            crop = self.transform(crop)
        return crop, self.labels[index]
