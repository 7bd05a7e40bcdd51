"""The crop folder the classifier trains on: annotated cells as positives and :mod:`.negatives` as
negatives, split by whole images, every crop cut by :func:`.crops.crop_and_resize` (the hook's function).

Layout written by :func:`build_crop_dataset`::

    DIR/<split>/<myeloma|non_myeloma>/<image_id>_<n>.png   (BGR PNG, size x size)
    DIR/manifest.csv    one row per crop: path, split, image_id, source_image, x0, y0, x1, y1, label, source
    DIR/balance.json    crop counts per split, label and source
    DIR/crops.json      how the crops were made (margin, size, placement, datasets, size prior)
"""
import csv
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.images import read_image, read_record_image
from ..utils.errors import InputError
from .crops import CROP_PLACEMENT, crop_and_resize, crop_side
from .labels import CLASS_NAMES
from .negatives import (BoxPredictor, CellSizePrior, annotation_boxes, detector_negatives, drop_duplicates,
                        stain_negatives)

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = ("path", "split", "image_id", "source_image", "x0", "y0", "x1", "y1", "label", "source")


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


def image_candidates(record: dict, image_bgr: np.ndarray, prior: Optional[CellSizePrior],
                     predictor: Optional[BoxPredictor], iou_threshold: float
                     ) -> List[Tuple[np.ndarray, int, str]]:
    """(box, label, source) of every crop of one image: annotated cells, then detector negatives,
    then stain negatives that duplicate no detector negative (IoU >= 0.5).

    ``image_bgr`` is the record's HxWx3 uint8 BGR image (:func:`read_record_image`); each box is a (4,)
    float64 XYXY array in its pixels, each label 1 (myeloma) or 0, each source "annotation", "detector" or
    "stain_heuristic"."""
    annotations = record.get("annotations", [])
    found = [(box, 1, "annotation") for box in annotation_boxes(annotations)]
    negatives = np.zeros((0, 4))
    if predictor is not None:
        negatives = drop_duplicates(detector_negatives(predictor, image_bgr, annotations, iou_threshold,
                                                       record.get("cell_diameter")),
                                    negatives)
        found += [(box, 0, "detector") for box in negatives]
    if prior is not None:
        stain = drop_duplicates(stain_negatives(image_bgr, annotations, prior, iou_threshold), negatives)
        found += [(box, 0, "stain_heuristic") for box in stain]
    return found


def _check_disjoint(splits: Mapping[str, Sequence[dict]]) -> None:
    """InputError for an image in two splits: the same file, or the same SegPC frame id at another
    resolution (segpc_lowres holds copies of the full-size frames)."""
    owner: Dict[Any, Tuple[str, str]] = {}
    for split, records in splits.items():
        if not records:
            raise InputError(f"split {split!r} has no images")
        for record in records:
            keys = [os.path.abspath(record["file_name"])]
            if isinstance(record.get("image_id"), str):
                keys.append(("frame", record["image_id"]))
            for key in keys:
                other_split, other_file = owner.setdefault(key, (split, record["file_name"]))
                if other_split != split:
                    raise InputError(f"{record['file_name']} (split {split!r}) and {other_file} (split "
                                     f"{other_split!r}) are the same image: the val crops would be of "
                                     "training images")


def build_crop_dataset(splits: Mapping[str, Sequence[dict]], output_dir: str, margin: float = 0.15,
                       size: int = 128, prior: Optional[CellSizePrior] = None,
                       predictor: Optional[BoxPredictor] = None, iou_threshold: float = 0.3,
                       info: Optional[dict] = None, crop_diameters: float = 0.0) -> dict:
    """Write the crops of every split (see the module docstring) and return the class balance.

    Args:
        splits: split name -> dataset dicts; no image may appear in two splits.
        prior: enables the stain heuristic (measure it on the training split).
        predictor: enables detector hard negatives.
        info: extra entries for ``crops.json`` (e.g. dataset names).
        crop_diameters: crop side in the record's ``cell_diameter`` (see :func:`.crops.square_crop_box`);
            0: from each box and ``margin``.
    """
    if prior is None and predictor is None:
        raise ValueError("no source of negatives: give a CellSizePrior (stain heuristic) or a predictor")
    _check_disjoint(splits)
    for split in splits:
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(output_dir, split, name), exist_ok=True)
    rows = []
    for split, records in splits.items():
        for record in records:
            image = read_record_image(record)
            side = crop_side(crop_diameters, record.get("cell_diameter"))
            candidates = image_candidates(record, image, prior, predictor, iou_threshold)
            for n, (box, label, source) in enumerate(candidates):
                rel = os.path.join(split, CLASS_NAMES[label], f"{record['image_id']}_{n}.png")
                crop = crop_and_resize(image, box, margin, size, side=side)
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
        json.dump({"margin": margin, "size": size, "placement": CROP_PLACEMENT, "crop_diameters": crop_diameters,
                   "iou_threshold": iou_threshold,
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
    with _crop_folder_file(crops_dir, "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if split is None or r["split"] == split]


def read_crop_params(crops_dir: str) -> dict:
    """``crops.json`` of a crop folder: margin and size that inference must reuse."""
    with _crop_folder_file(crops_dir, "crops.json") as f:
        return json.load(f)


def _crop_folder_file(crops_dir: str, name: str):
    path = os.path.join(crops_dir, name)
    try:
        return open(path, newline="")
    except OSError as err:
        raise InputError(f"{path}: {err.strerror} (not a crop folder of tools/build_crops.py?)") from None


class CropDataset(Dataset):
    """One split of a crop folder as (crop, label) pairs: a (3, S, S) uint8 RGB tensor, S the folder's
    crop size, and an int index into :data:`CLASS_NAMES`.
    """

    def __init__(self, crops_dir: str, split: str,
                 transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        """``transform`` ((3, S, S) uint8 tensor -> tensor) runs on each crop, e.g.
        :func:`~detectron2_myeloma.classifier.augmentation.build_crop_augmentation`'s, which keeps the
        shape and dtype."""
        self.crops_dir = crops_dir
        self.rows = read_manifest(crops_dir, split)
        self.labels = [CLASS_NAMES.index(r["label"]) for r in self.rows]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        path = os.path.join(self.crops_dir, self.rows[index]["path"])
        crop = torch.from_numpy(read_image(path, format="RGB")).permute(2, 0, 1)
        if self.transform is not None:
            crop = self.transform(crop)
        return crop, self.labels[index]
