"""The files ``tools/predict.py`` writes for a folder of images: preview pictures, CSV tables and COCO
results json."""
import csv
import json
import os
from typing import Any, Dict, List

import cv2
import numpy as np
from detectron2.data import Metadata
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import Instances

from ..data.images import image_stem
from ..classifier.labels import NOT_CLASSIFIED
from .overlays import cell_labels, colour_splash, draw_overlay, preview_scale

RESULTS_JSON = "instances_predictions.json"
SUMMARY_COLUMNS = ["image", "cells", "myeloma", "non_myeloma", "mean_score", "mean_area", "median_area"]
CELL_COLUMNS = ["image", "index", "class", "score", "area", "x", "y", "width", "height",
                "myeloma_label", "myeloma_prob"]


class PredictionWriter:
    """Context manager saving, for each image, ``<stem>_overlay.png`` (Detectron2 Visualizer) and
    ``<stem>_splash.png`` (cells in colour, the rest grey), both scaled by :func:`preview_scale`; a row
    in ``summary.csv`` and one row per detection in ``cells.csv``; and on exit every detection in
    ``instances_predictions.json``, a COCO results list (pycocotools ``loadRes``) whose ``image_id``
    is the image's 1-based position in its listing and whose ``category_id`` is the class index + 1,
    the numbering of :func:`detectron2_myeloma.data.coco_io.dicts_to_coco`.

    The myeloma columns are filled when the instances carry ``pred_cell_labels`` (1 = myeloma,
    0 = non-myeloma, -1 = not classified, e.g. a nucleus) and ``pred_cell_probs`` (myeloma probability;
    (N, 2) class probabilities are read at column 1), as the cell classifier post-hook adds them; they
    are left empty otherwise, and so are the ``myeloma_label`` / ``myeloma_prob`` keys of the json.
    """

    def __init__(self, output_dir: str, metadata: Metadata, cell_class: int):
        self.output_dir = output_dir
        self.metadata = metadata
        self.cell_class = cell_class
        self.results: List[Dict[str, Any]] = []
        self._files: List[Any] = []

    def __enter__(self) -> "PredictionWriter":
        os.makedirs(self.output_dir, exist_ok=True)
        self._summary = self._open_csv("summary.csv", SUMMARY_COLUMNS)
        self._cells = self._open_csv("cells.csv", CELL_COLUMNS)
        return self

    def _open_csv(self, name: str, columns: List[str]) -> "csv.DictWriter":
        f = open(os.path.join(self.output_dir, name), "w", newline="")
        self._files.append(f)
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        return writer

    def __exit__(self, exc_type, exc, traceback) -> None:
        for f in self._files:
            f.close()
        with open(os.path.join(self.output_dir, RESULTS_JSON), "w") as f:
            json.dump(self.results, f)

    def add(self, image_index: int, path: str, image: np.ndarray, instances: Instances) -> None:
        """Save everything about one image (BGR) and its CPU ``instances`` at the image's resolution."""
        stem, name = image_stem(path), os.path.basename(path)
        scale = preview_scale(*image.shape[:2])
        self._write_png(f"{stem}_overlay.png", draw_overlay(image, instances, self.metadata, scale))

        masks = instances.pred_masks.numpy()
        classes = instances.pred_classes.numpy()
        is_cell = classes == self.cell_class
        cells = np.zeros(image.shape[:2], dtype=bool)
        for i in np.flatnonzero(is_cell):
            cells |= masks[i]
        splash = colour_splash(image, cells)
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        self._write_png(f"{stem}_splash.png", cv2.resize(splash, size, interpolation=cv2.INTER_AREA))

        areas = masks.sum(axis=(1, 2))
        scores = instances.scores.numpy()
        labels, probs = cell_labels(instances)
        names = self.metadata.thing_classes
        for index, result in enumerate(instances_to_coco_json(instances, image_index)):
            result["category_id"] += 1
            result["file_name"] = name
            classified = labels is not None and labels[index] != NOT_CLASSIFIED
            if classified:
                result["myeloma_label"] = int(labels[index])
            if classified and probs is not None:
                result["myeloma_prob"] = float(probs[index])
            self.results.append(result)
            self._cells.writerow({
                "image": name, "index": index, "class": names[classes[index]],
                "score": f"{scores[index]:.4f}", "area": int(areas[index]),
                **dict(zip(("x", "y", "width", "height"), (f"{v:.1f}" for v in result["bbox"]))),
                "myeloma_label": result.get("myeloma_label", ""),
                "myeloma_prob": f"{result['myeloma_prob']:.4f}" if "myeloma_prob" in result else "",
            })
        cell_areas, cell_scores = areas[is_cell], scores[is_cell]
        self._summary.writerow({
            "image": name, "cells": int(is_cell.sum()),
            "myeloma": "" if labels is None else int((labels[is_cell] == 1).sum()),
            "non_myeloma": "" if labels is None else int((labels[is_cell] == 0).sum()),
            "mean_score": f"{cell_scores.mean():.4f}" if is_cell.any() else "",
            "mean_area": f"{cell_areas.mean():.1f}" if is_cell.any() else "",
            "median_area": f"{np.median(cell_areas):.1f}" if is_cell.any() else "",
        })

    def _write_png(self, name: str, image: np.ndarray) -> None:
        path = os.path.join(self.output_dir, name)
        if not cv2.imwrite(path, image):
            raise OSError(f"{path}: cannot write image")
