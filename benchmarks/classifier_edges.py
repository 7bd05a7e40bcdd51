#!/usr/bin/env python
"""The cell classifier on full-size frames no model saw, with its errors split by where the cell lies:
"edge" cells, whose crop square (centred on the cell, :func:`square_crop_box`) leaves the frame and is
padded, against "centred" ones. Issue 30: crops used to be shifted inside the frame, off their cell; on
that code the shipped classifier missed 4 of 15 edge myeloma cells and 0 of 29 centred ones here.

    python -m benchmarks.classifier_edges [--weights segpc-cell-classifier] [--output edges.json]

Candidates are those of ``tools/build_crops.py`` for the val split of ``dev/ship_models.sh``'s crop
folders (annotated cells as myeloma; detector detections of no annotated cell and stain negatives as
other, the stain prior measured on the paired training set), cut in memory by the package's one crop
function. Reports, per set and pooled: accuracy, balanced accuracy, ROC AUC; for edge and centred cells
apart, the myeloma cells called other and the other cells called myeloma; and how many candidates
share their exact crop window with another (what shifted crops did near corners; 0 when centred).
About a minute on one CPU thread.
"""
import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

import detectron2_myeloma  # noqa: F401  registers the datasets
from detectron2_myeloma.classifier.crops import crop_and_resize, crop_side, square_crop_box
from detectron2_myeloma.classifier.dataset import image_candidates
from detectron2_myeloma.classifier.evaluation import classification_metrics
from detectron2_myeloma.classifier.model import load_classifier
from detectron2_myeloma.classifier.negatives import CellSizePrior
from detectron2_myeloma.data.catalog import dataset_dicts
from detectron2_myeloma.data.images import read_record_image
from detectron2_myeloma.engine.box_predictor import box_predictor
from detectron2_myeloma.model_zoo import DEFAULT_DETECTOR, get_config_file, resolve_weights
from detectron2_myeloma.utils.atomic import write_json_atomic

# val set -> the training set its crop folder was cut beside (dev/ship_models.sh, step 2)
SETS = {"segpc_mini_val": "segpc_mini_train", "segpc_nikon_val": "segpc_nikon_fit"}


def leaves_image(window: Sequence[int], image_hw: Sequence[int]) -> bool:
    """Whether a crop window (:func:`square_crop_box`, centred on its cell) reaches outside the image."""
    x0, y0, x1, y1 = window
    return x0 < 0 or y0 < 0 or x1 > image_hw[1] or y1 > image_hw[0]


def edge_split(labels: np.ndarray, probs: np.ndarray, edge: np.ndarray, threshold: float) -> Dict:
    """Errors per class, edge and centred cells apart: ``{"edge": {"myeloma called other": [wrong, n],
    "other called myeloma": [wrong, n]}, "centred": {...}}``."""
    called = probs > threshold
    split = {}
    for where, mask in (("edge", edge), ("centred", ~edge)):
        split[where] = {"myeloma called other": [int((mask & (labels == 1) & ~called).sum()),
                                                 int((mask & (labels == 1)).sum())],
                        "other called myeloma": [int((mask & (labels == 0) & called).sum()),
                                                 int((mask & (labels == 0)).sum())]}
    return split


def summary(labels: np.ndarray, probs: np.ndarray, edge: np.ndarray, shared: int, threshold: float) -> Dict:
    metrics = classification_metrics(labels, probs, threshold)
    return {"crops": int(labels.size), "myeloma": int(labels.sum()), "other": int((labels == 0).sum()),
            "accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
            "roc_auc": metrics["roc_auc"], "confusion_matrix": metrics["confusion_matrix"],
            "edge_cells": int(edge.sum()), "shared_windows": shared,
            "split": edge_split(labels, probs, edge, threshold)}


def measure_set(val: str, train: str, classifier, predictor) -> Dict:
    """(labels, myeloma probabilities, edge flags, candidates sharing a window) of one val set."""
    prior = CellSizePrior.from_dataset(dataset_dicts(train, "training set"))
    labels: List[int] = []
    probs: List[float] = []
    edge: List[bool] = []
    shared = 0
    for record in dataset_dicts(val, "val set"):
        image = read_record_image(record)
        hw = image.shape[:2]
        side = crop_side(classifier.crop_diameters, record.get("cell_diameter"))
        candidates = image_candidates(record, image, prior, predictor, 0.3)
        boxes = [box for box, _, _ in candidates]
        crops = np.stack([crop_and_resize(image, box, classifier.crop_margin, classifier.input_size, side=side)
                          for box in boxes])[..., ::-1]  # BGR -> RGB, as the classifier takes them
        probs += classifier.classify(np.ascontiguousarray(crops)).cpu().tolist()
        labels += [label for _, label, _ in candidates]
        windows = [square_crop_box(box, hw, classifier.crop_margin, side) for box in boxes]
        edge += [leaves_image(window, hw) for window in windows]
        shared += sum(windows.count(w) > 1 for w in windows)
    return {"labels": np.array(labels), "probs": np.array(probs), "edge": np.array(edge), "shared": shared}


def format_report(results: Dict) -> str:
    lines = [f"{'set':<16}{'crops (my/other)':>18}{'acc':>7}{'bal acc':>9}{'AUC':>7}{'edge':>6}{'shared':>8}"
             "   myeloma called other: edge | centred   other called myeloma: edge | centred"]
    for name, r in results.items():
        s = r["split"]
        auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
        lines.append(
            f"{name:<16}{r['myeloma']:>9} / {r['other']:<6}{r['accuracy']:>7.3f}{r['balanced_accuracy']:>9.3f}"
            f"{auc:>7}{r['edge_cells']:>6}{r['shared_windows']:>8}"
            f"   {'%d/%d' % tuple(s['edge']['myeloma called other']):>15} | "
            f"{'%d/%d' % tuple(s['centred']['myeloma called other']):<8}"
            f"   {'%d/%d' % tuple(s['edge']['other called myeloma']):>15} | "
            f"{'%d/%d' % tuple(s['centred']['other called myeloma'])}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="segpc-cell-classifier", help="classifier checkpoint or shipped name")
    parser.add_argument("--detector-config", help="detector for the negatives (default: the shipped one's)")
    parser.add_argument("--detector-weights", default=DEFAULT_DETECTOR, help="checkpoint or shipped name")
    parser.add_argument("--no-detector", action="store_true", help="stain negatives only")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--output", help="JSON file for the numbers")
    args = parser.parse_args(argv)
    classifier = load_classifier(resolve_weights(args.weights), "cpu")
    predictor = None
    if not args.no_detector:
        config = args.detector_config or get_config_file(DEFAULT_DETECTOR)
        predictor = box_predictor(config, resolve_weights(args.detector_weights), "cpu")
    measured = {name: measure_set(name, SETS[name], classifier, predictor) for name in args.sets}
    if len(measured) > 1:
        sets = list(measured.values())
        measured["pooled"] = {**{key: np.concatenate([m[key] for m in sets]) for key in ("labels", "probs", "edge")},
                              "shared": sum(m["shared"] for m in sets)}
    results = {name: summary(m["labels"], m["probs"], m["edge"], m["shared"], classifier.threshold)
               for name, m in measured.items()}
    print(format_report(results))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        write_json_atomic({"weights": args.weights, "sets": results}, args.output, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
