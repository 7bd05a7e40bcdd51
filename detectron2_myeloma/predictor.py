"""Run a trained detector over image files: listing, reading, config set-up, the inference loop, and
the outputs of ``tools/predict.py`` (overlays, colour splashes, COCO results json, CSV tables).

Shared by ``tools/predict.py`` and ``tools/make_submission.py`` so that both read images, resolve class
names and treat unreadable files the same way: an unreadable file is recorded in a failure list and
skipped, so one bad file in a folder of hundreds costs that file only; the tools report the list at the
end and exit non-zero.
"""
import argparse
import csv
import json
import logging
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import Metadata, MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer
from tqdm import tqdm

from . import modeling as _modeling  # noqa: F401  registers the project's models
from .config import load_config
from .data.report import DatasetError
from .data.segpc_format import IMAGE_EXTENSIONS
from .classifier.labels import NOT_CLASSIFIED
from .modeling.precision import log_precision_policy

logger = logging.getLogger(__name__)

Failure = Tuple[str, str]  # (path, why it was skipped)


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The model options both tools take: config file, score threshold, trailing config overrides."""
    parser.add_argument("--config-file", required=required, metavar="FILE", help="Detectron2 config YAML")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="keep detections with at least this score (also sets "
                             "MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    parser.add_argument("--classes", help="model class names, comma-separated (e.g. cell,nucleus); "
                                          "default: thing_classes of DATASETS.TEST[0]")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth")


def list_images(path: str) -> List[str]:
    """``[path]`` for a file; for a folder, its image files (by extension, not recursive) sorted by
    name. Raises ValueError for two files with the same stem (``a.bmp`` and ``a.png``): the stem is
    the SegPC image id and names the outputs."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(os.path.join(path, name) for name in os.listdir(path)
                   if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, name)))
    seen = {}
    for file in files:
        stem = image_stem(file)
        if stem in seen:
            raise ValueError(f"{file} and {seen[stem]} share the image id {stem!r}")
        seen[stem] = file
    return files


def image_stem(path: str) -> str:
    """The image id of a file: its name without extension (SegPC ``x/<id>.bmp``)."""
    return os.path.splitext(os.path.basename(path))[0]


def read_image(path: str) -> np.ndarray:
    """HxWx3 uint8 BGR image (any format OpenCV reads; 16-bit and grey images are converted);
    raises DatasetError naming the file when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(path, "cannot read image (missing, truncated or not an image)")
    return image


def iter_images(paths: Sequence[str], failures: List[Failure], desc: str = "images"
                ) -> Iterator[Tuple[str, np.ndarray]]:
    """``(path, BGR image)`` of every readable file, with a progress bar; unreadable files are appended
    to ``failures`` and skipped."""
    for path in tqdm(paths, desc=desc, unit="image"):
        try:
            image = read_image(path)
        except DatasetError as err:
            logger.warning("%s", err)
            failures.append((str(path), err.problem))
            continue
        yield path, image


def setup_cfg(config_file: str, opts: Sequence[str], score_threshold: float,
              max_cells: int = 0) -> CfgNode:
    """Project config from ``config_file`` + ``opts``. The score threshold is applied inside the
    model; ``TEST.DETECTIONS_PER_IMAGE`` is raised to ``max_cells`` per class, room for that many
    cells and their nuclei. Falls back to CPU when CUDA is asked for but absent."""
    cfg = load_config(config_file, opts)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
    cfg.TEST.DETECTIONS_PER_IMAGE = max(cfg.TEST.DETECTIONS_PER_IMAGE,
                                        max_cells * cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but CUDA is not available: running on CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    log_precision_policy(cfg, training=False)
    return cfg


def model_metadata(cfg: CfgNode, classes: Optional[str] = None) -> Metadata:
    """Metadata (``thing_classes``, colours when registered) of the model's classes: from ``classes``
    ("cell,nucleus") when given, else from ``DATASETS.TEST[0]``. The count must match the model's."""
    if classes:
        metadata = Metadata(name="predict", thing_classes=[c.strip() for c in classes.split(",")])
    elif len(cfg.DATASETS.TEST):
        metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        if not hasattr(metadata, "thing_classes"):
            raise ValueError(f"test dataset {cfg.DATASETS.TEST[0]!r} has no thing_classes; pass --classes")
    else:
        raise ValueError("the config sets no DATASETS.TEST: pass the class names with --classes")
    if len(metadata.thing_classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise ValueError(f"classes {metadata.thing_classes} do not match MODEL.ROI_HEADS.NUM_CLASSES = "
                         f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}")
    return metadata


def cell_and_nucleus_classes(class_names: Sequence[str]) -> Tuple[int, Optional[int]]:
    """(cell class index, nucleus class index or None). The cell class is "cell", or the only class
    of a one-class model; the nucleus class is "nucleus" beside a cell class."""
    names = list(class_names)
    if "cell" in names:
        return names.index("cell"), names.index("nucleus") if "nucleus" in names else None
    if len(names) == 1:
        return 0, None
    raise ValueError(f"cannot tell which of the classes {names} is the cell: name it 'cell'")


class OriginalImagePredictor(DefaultPredictor):
    """``DefaultPredictor`` whose model input also holds the full-resolution image, ``"original_image"``
    (3xHxW uint8 in ``INPUT.FORMAT``): the cell classifier post-hook cuts its crops from it, at the
    resolution its training crops were cut at, rather than from the resized ``"image"``."""

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """Predictions for one HxWx3 BGR image, as ``DefaultPredictor`` returns them."""
        with torch.no_grad():
            if self.input_format == "RGB":
                original_image = original_image[:, :, ::-1]
            height, width = original_image.shape[:2]
            image = self.aug.get_transform(original_image).apply_image(original_image)
            full = np.ascontiguousarray(original_image.transpose(2, 0, 1))
            inputs = {"image": torch.as_tensor(image.astype("float32").transpose(2, 0, 1)),
                      "original_image": torch.from_numpy(full), "height": height, "width": width}
            return self.model([inputs])[0]


def build_predictor(cfg: CfgNode, cell_class: int) -> OriginalImagePredictor:
    """The predictor of both tools. Raises ValueError when a cell classifier would classify another
    class than the one the outputs count as cells (``cell_class``, from the class names)."""
    classifier = cfg.MODEL.CELL_CLASSIFIER
    if classifier.ENABLED and classifier.CELL_CLASS != cell_class:
        raise ValueError(f"MODEL.CELL_CLASSIFIER.CELL_CLASS is {classifier.CELL_CLASS} but the cell class "
                         f"of the class names is {cell_class}")
    return OriginalImagePredictor(cfg)


def predict_images(predictor: DefaultPredictor, paths: Iterable[str], failures: List[Failure]
                   ) -> Iterator[Tuple[str, np.ndarray, Instances]]:
    """``(path, BGR image, Instances on CPU at the image's resolution)`` for every readable image."""
    for path, image in iter_images(list(paths), failures):
        yield path, image, predictor(image)["instances"].to("cpu")


def report_failures(failures: Sequence[Failure]) -> int:
    """Log the skipped files (after the progress bars, so they are seen) and return the exit code."""
    for path, problem in failures:
        logger.error("not processed: %s: %s", path, problem)
    if failures:
        logger.error("%d file(s) could not be read", len(failures))
    return 1 if failures else 0


# --- Outputs of tools/predict.py --------------------------------------------------------------------
RESULTS_JSON = "instances_predictions.json"
SUMMARY_COLUMNS = ["image", "cells", "myeloma", "non_myeloma", "mean_score", "mean_area", "median_area"]
CELL_COLUMNS = ["image", "index", "class", "score", "area", "x", "y", "width", "height",
                "myeloma_label", "myeloma_prob"]
PREVIEW_MAX_SIDE = 1280  # overlays and splashes of 2040x1536 / 2560x1920 images are scaled down to this


def preview_scale(height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> float:
    """Scale that fits an image's longer side into ``max_side`` (never enlarges)."""
    return min(1.0, max_side / max(height, width))


def colour_splash(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image in colour where ``mask`` is set, greyscale elsewhere (BGR in, BGR out)."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return np.where(mask[..., None], image, grey)


MYELOMA_COLOURS = {1: (0.86, 0.08, 0.24), 0: (0.0, 0.63, 0.3)}  # RGB in [0, 1]: myeloma red, other green
UNLABELLED_COLOUR = (30, 90, 255)  # 0-255 RGB, for classes without metadata.thing_colors


def cell_labels(instances: Instances) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The cell classifier's labels and myeloma probabilities of ``instances`` (None without them)."""
    labels = instances.pred_cell_labels.numpy() if instances.has("pred_cell_labels") else None
    probs = instances.pred_cell_probs.numpy() if instances.has("pred_cell_probs") else None
    if probs is not None and probs.ndim == 2:
        probs = probs[:, 1]
    return labels, probs


def draw_overlay(image: np.ndarray, instances: Instances, metadata: Metadata, scale: float) -> np.ndarray:
    """Detectron2's Visualizer drawing of ``instances`` over ``image`` (BGR in, BGR out). Cells the
    classifier labelled are coloured and captioned by its answer ("myeloma 93%" in red, "other 12%" in
    green: the myeloma probability); other detections keep the class name and detector score."""
    visualizer = Visualizer(image[:, :, ::-1], metadata=metadata, scale=scale)
    labels, probs = cell_labels(instances)
    if labels is None or not len(instances):
        return visualizer.draw_instance_predictions(instances).get_image()[:, :, ::-1]
    thing_colours = metadata.get("thing_colors", None)
    captions, colours = [], []
    for index, (cls, score) in enumerate(zip(instances.pred_classes.tolist(), instances.scores.tolist())):
        label = int(labels[index])
        if label == NOT_CLASSIFIED:
            captions.append(f"{metadata.thing_classes[cls]} {score:.0%}")
            colours.append(tuple(c / 255 for c in (thing_colours[cls] if thing_colours else UNLABELLED_COLOUR)))
        else:
            prob = f" {probs[index]:.0%}" if probs is not None else ""
            captions.append(("myeloma" if label == 1 else "other") + prob)
            colours.append(MYELOMA_COLOURS[label])
    drawn = visualizer.overlay_instances(masks=instances.pred_masks.numpy(), boxes=instances.pred_boxes,
                                         labels=captions, assigned_colors=colours, alpha=0.4)
    return drawn.get_image()[:, :, ::-1]


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
