"""The files ``tools/predict.py`` writes for a folder of images: preview pictures, CSV tables, COCO
results json and QuPath GeoJSON."""
import csv
import json
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Dict, List, Optional, Sequence

import cv2
import numpy as np
from detectron2.data import Metadata

from ..classifier.labels import NOT_CLASSIFIED
from ..data.images import image_stem
from ..data.regions import ImageRegions
from ..structures import CellDetections, CellScale
from ..utils.atomic import write_json_atomic
from .geojson import cell_features, feature_collection
from .overlays import colour_splash, draw_overlay, preview_mask, preview_scale

logger = logging.getLogger(__name__)

RESULTS_JSON = "instances_predictions.json"
SUMMARY_COLUMNS = ["image", "cells", "myeloma", "non_myeloma", "mean_score", "mean_area", "median_area",
                   "cell_diameter_px", "cell_diameter_from", "warning"]
CELL_COLUMNS = ["image", "index", "class", "score", "area", "x", "y", "width", "height",
                "nucleus_area", "nc_ratio", "myeloma_label", "myeloma_prob"]
MAX_PENDING_PICTURES = 4  # pictures waiting for the background writer before add() waits for it


def write_png(path: str, image: np.ndarray) -> None:
    """Write an HxWx3 uint8 BGR ``image`` to ``path`` with OpenCV; OSError where it cannot (OpenCV only
    returns False, so a failed write would pass unseen)."""
    if not cv2.imwrite(path, image):
        raise OSError(f"{path}: cannot write image")


class PredictionWriter:
    """Context manager saving, for each image, ``<stem>_overlay.png`` (:func:`~.overlays.draw_overlay`) and
    ``<stem>_splash.png`` (cells in colour, the rest grey), scaled by :func:`preview_scale`;
    ``<stem>.geojson`` (the cells for QuPath, :mod:`~detectron2_myeloma.export.geojson`) unless
    ``geojson`` is None; a row in ``summary.csv`` and one row per detection in ``cells.csv``; and on exit
    every detection in ``instances_predictions.json``, a COCO results list (pycocotools ``loadRes``)
    whose ``image_id`` is the image's 1-based position in its listing and whose ``category_id`` is the
    class index + 1, the numbering of :func:`detectron2_myeloma.data.datasets.coco_io.dicts_to_coco`.

    The myeloma columns are filled when the cell classifier labelled the cells (``labels`` and
    ``probs`` of the detections); they are left empty otherwise, and so are the ``myeloma_label`` /
    ``myeloma_prob`` keys of the json. ``geojson`` holds the keyword arguments of
    :func:`~detectron2_myeloma.export.geojson.cell_features` other than the detections and classes.
    The nucleus of a cell (its own, where the model predicts one per cell, ``own_nuclei``; else a
    nucleus detection inside it) gives the ``nucleus_area`` and ``nc_ratio`` (nucleus / cell area)
    columns of cells.csv. QuPath ``"cell"`` objects need a nucleus: a model with neither gets detection
    objects, said once in the log, rather than cells without the nucleus the README promises.

    The pictures are encoded and written by a background thread (PNG compression is a good part of an
    image's time), overlapping the next image's prediction; a picture that cannot be written raises at a
    later ``add`` or on exit.
    """

    def __init__(self, output_dir: str, metadata: Metadata, cell_class: int,
                 nucleus_class: Optional[int] = None, geojson: Optional[Dict[str, Any]] = None,
                 own_nuclei: bool = False):
        self.output_dir = output_dir
        self.metadata = metadata
        self.cell_class = cell_class
        self.nucleus_class = nucleus_class
        self.geojson = geojson
        if (geojson is not None and geojson.get("object_type") == "cell" and nucleus_class is None
                and not own_nuclei):
            logger.warning("the model predicts no nucleus, so the cells are written to GeoJSON as QuPath "
                           "detection objects, not cell objects")
            self.geojson = {**geojson, "object_type": "detection"}
        self.results: List[Dict[str, Any]] = []
        self._files: List[Any] = []

    def __enter__(self) -> "PredictionWriter":
        os.makedirs(self.output_dir, exist_ok=True)
        self._summary = self._open_csv("summary.csv", SUMMARY_COLUMNS)
        self._cells = self._open_csv("cells.csv", CELL_COLUMNS)
        self._pictures = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picture-writer")
        self._pending: Deque[Future] = deque()
        return self

    def _open_csv(self, name: str, columns: List[str]) -> "csv.DictWriter":
        f = open(os.path.join(self.output_dir, name), "w", newline="")
        self._files.append(f)
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        return writer

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            while self._pending:
                failure = self._pending.popleft().exception()
                if failure is not None and exc_type is None:
                    raise failure
        finally:
            self._pictures.shutdown()
            for f in self._files:
                f.close()
        with open(os.path.join(self.output_dir, RESULTS_JSON), "w") as f:
            json.dump(self.results, f)

    def add(self, image_index: int, path: str, image: ImageRegions, detections: CellDetections,
            warnings: Sequence[str] = (), scale: Optional[CellScale] = None) -> None:
        """Save everything about one image and its ``detections`` (at its full resolution), made at the
        cell ``scale`` (summary.csv says which and whence); the pictures
        are drawn on a preview of it, scaled by :func:`preview_scale`. ``warnings`` (e.g.
        :func:`~detectron2_myeloma.data.colour.colour_warnings`) fill its ``warning`` column of
        summary.csv, joined by "; ", so a table of counts shows which counts to doubt."""
        stem, name = image_stem(path), os.path.basename(path)
        preview = image.preview(preview_scale(*image.shape))
        self._write_png(f"{stem}_overlay.png", draw_overlay(preview, detections, self.metadata))
        is_cell = detections.classes == self.cell_class
        cells = preview_mask(detections, np.flatnonzero(is_cell), preview.shape[:2])
        self._write_png(f"{stem}_splash.png", colour_splash(preview, cells))
        pairs = detections.cell_nuclei(self.cell_class, self.nucleus_class)
        if self.geojson is not None:
            features = cell_features(detections, self.cell_class, self.nucleus_class,
                                     **{"id_prefix": stem, "pairs": pairs, **self.geojson})
            write_json_atomic(feature_collection(features), os.path.join(self.output_dir, f"{stem}.geojson"))

        areas = detections.areas()
        nuclei = dict(pairs)
        names = self.metadata.thing_classes
        labels, probs = detections.labels, detections.probs
        for index in range(len(detections)):
            x0, y0, x1, y1 = (float(v) for v in detections.boxes[index])
            rle = detections.masks[index].rle(detections.image_size)
            result = {"image_id": image_index, "category_id": int(detections.classes[index]) + 1,
                      "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(detections.scores[index]),
                      "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                      "file_name": name}
            classified = labels is not None and labels[index] != NOT_CLASSIFIED
            if classified:
                result["myeloma_label"] = int(labels[index])
            if classified and probs is not None:
                result["myeloma_prob"] = float(probs[index])
            self.results.append(result)
            nucleus = nuclei.get(index)
            self._cells.writerow({
                "image": name, "index": index, "class": names[detections.classes[index]],
                "score": f"{detections.scores[index]:.4f}", "area": int(areas[index]),
                **dict(zip(("x", "y", "width", "height"), (f"{v:.1f}" for v in result["bbox"]))),
                "nucleus_area": nucleus.area if nucleus is not None else "",
                "nc_ratio": f"{nucleus.area / areas[index]:.4f}" if nucleus is not None and areas[index] else "",
                "myeloma_label": result.get("myeloma_label", ""),
                "myeloma_prob": f"{result['myeloma_prob']:.4f}" if "myeloma_prob" in result else "",
            })
        cell_areas, cell_scores = areas[is_cell], detections.scores[is_cell]
        self._summary.writerow({
            "image": name, "cells": int(is_cell.sum()),
            "myeloma": "" if labels is None else int((labels[is_cell] == 1).sum()),
            "non_myeloma": "" if labels is None else int((labels[is_cell] == 0).sum()),
            "mean_score": f"{cell_scores.mean():.4f}" if is_cell.any() else "",
            "mean_area": f"{cell_areas.mean():.1f}" if is_cell.any() else "",
            "median_area": f"{np.median(cell_areas):.1f}" if is_cell.any() else "",
            "cell_diameter_px": f"{scale.diameter:.1f}" if scale else "",
            "cell_diameter_from": scale.source if scale else "",
            "warning": "; ".join(warnings),
        })

    def _write_png(self, name: str, image: np.ndarray) -> None:
        while len(self._pending) >= MAX_PENDING_PICTURES:
            self._pending.popleft().result()
        self._pending.append(self._pictures.submit(write_png, os.path.join(self.output_dir, name), image))
