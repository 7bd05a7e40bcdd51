"""Pictures of predictions: overlays captioned by the cell classifier's answer and colour splashes
(cells in colour, the rest grey), scaled for viewing. Drawn with OpenCV, not Detectron2's matplotlib
Visualizer: drawing is part of every predicted frame's time (benchmarks/RESULTS.md, "End to end")."""
from typing import List, Tuple

import cv2
import numpy as np
from detectron2.data import Metadata

from ..classifier.labels import NOT_CLASSIFIED
from ..structures import CellDetections, MaskCrop

PREVIEW_MAX_SIDE = 1280  # overlays and splashes of 2040x1536 / 2560x1920 images are scaled down to this


def preview_scale(height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> float:
    """Scale that fits an image's longer side into ``max_side`` (never enlarges)."""
    return min(1.0, max_side / max(height, width))


def colour_splash(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image in colour where ``mask`` is set, greyscale elsewhere: an HxWx3 uint8 BGR ``image`` and
    an HxW bool ``mask`` -> an HxWx3 uint8 BGR copy."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return np.where(mask[..., None], image, grey)


MYELOMA_COLOURS = {1: (0.86, 0.08, 0.24), 0: (0.0, 0.63, 0.3)}  # RGB in [0, 1]: myeloma red, other green
UNLABELLED_COLOUR = (30, 90, 255)  # 0-255 RGB, for classes without metadata.thing_colors
FILL_ALPHA = 0.4  # opacity of a cell's fill over the image


def preview_contours(crop: MaskCrop, scale: float) -> List[np.ndarray]:
    """The outer outlines of a mask at ``scale``, as OpenCV contours: (K, 1, 2) int32 (x, y) points in
    preview pixels, K >= 3 each."""
    small = crop.scaled(scale)
    if small.area == 0:
        return []
    contours, _ = cv2.findContours(small.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(small.x, small.y))
    return [c for c in contours if len(c) >= 3]


def preview_mask(detections: CellDetections, indices: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """The union of the masks at ``indices`` ((K,) integer indices into ``detections``), drawn at the
    size ``shape`` (h, w) of a preview: an h x w bool array."""
    scale = shape[1] / detections.image_size[1]
    canvas = np.zeros(shape, dtype=bool)
    for i in indices:
        detections.masks[i].scaled(scale).paste(canvas)
    return canvas


def overlay_captions(detections: CellDetections, metadata: Metadata) -> List[Tuple[str, Tuple[int, int, int]]]:
    """(caption, BGR colour) of every detection. Each caption starts with ``#k``, the detection's row
    index in its image (the ``index`` of cells.csv and the case report's galleries), so a cell seen in
    an overlay is found there. Cells the classifier labelled are coloured and captioned by its answer
    and the myeloma probability ("#3 myeloma 0.93" in red, "#4 other 0.12" in green: both numbers are
    the probability of myeloma, not a confidence in the label); other detections keep the class name
    and detector score, in the class's colour."""
    thing_colours = metadata.get("thing_colors", None)
    labels, probs = detections.labels, detections.probs
    captions = []
    for index, (cls, score) in enumerate(zip(detections.classes.tolist(), detections.scores.tolist())):
        label = NOT_CLASSIFIED if labels is None else int(labels[index])
        if label == NOT_CLASSIFIED:
            rgb = thing_colours[cls] if thing_colours else UNLABELLED_COLOUR
            caption = f"#{index} {metadata.thing_classes[cls]} {score:.0%}"
        else:
            rgb = tuple(round(255 * c) for c in MYELOMA_COLOURS[label])
            prob = f" {probs[index]:.2f}" if probs is not None else ""
            caption = f"#{index} " + ("myeloma" if label == 1 else "other") + prob
        captions.append((caption, tuple(int(c) for c in rgb[::-1])))
    return captions


def draw_overlay(preview: np.ndarray, detections: CellDetections, metadata: Metadata) -> np.ndarray:
    """``detections`` drawn over ``preview`` (the image, HxWx3 uint8 BGR, scaled to the size to draw at) with
    OpenCV: each cell filled at :data:`FILL_ALPHA` and outlined, its box and caption
    (:func:`overlay_captions`); each cell's own nucleus, where the model predicts one, outlined inside
    it in the cell's colour. Masks are drawn as outlines scaled to the preview, so a slide region's
    thousands of cells never need a full-size mask each. Returns a drawn copy, shape and dtype of
    ``preview``."""
    scale = preview.shape[1] / detections.image_size[1]
    fill, covered = np.zeros_like(preview), np.zeros(preview.shape[:2], np.uint8)
    drawn = []
    for index, (caption, colour) in enumerate(overlay_captions(detections, metadata)):
        contours = preview_contours(detections.masks[index], scale)
        if contours:
            cv2.drawContours(fill, contours, -1, colour, cv2.FILLED)
            cv2.drawContours(covered, contours, -1, 1, cv2.FILLED)
            drawn.append((index, caption, colour, contours))
    out = preview.copy()
    blend = covered.astype(bool)
    out[blend] = (preview[blend] * (1 - FILL_ALPHA) + fill[blend] * FILL_ALPHA).round().astype(np.uint8)
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(preview.shape[:2]) / 1500)
    for index, caption, colour, contours in drawn:
        cv2.drawContours(out, contours, -1, colour, 1, cv2.LINE_AA)
        if detections.nuclei is not None:
            cv2.drawContours(out, preview_contours(detections.nuclei[index], scale), -1, colour, 1, cv2.LINE_AA)
        x0, y0, x1, y1 = (int(round(v)) for v in detections.boxes[index] * scale)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1)
        (width, height), baseline = cv2.getTextSize(caption, font, font_scale, 1)
        top = max(y0 - height - baseline, 0)
        cv2.rectangle(out, (x0, top), (x0 + width, top + height + baseline), (0, 0, 0), cv2.FILLED)
        cv2.putText(out, caption, (x0, top + height), font, font_scale, colour, 1, cv2.LINE_AA)
    return out
