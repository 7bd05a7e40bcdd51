"""Pictures of predictions: Detectron2 Visualizer overlays captioned by the cell classifier's answer,
and colour splashes (cells in colour, the rest grey), scaled for viewing."""
from typing import List, Tuple

import cv2
import numpy as np
from detectron2.data import Metadata
from detectron2.utils.visualizer import Visualizer

from ..classifier.labels import NOT_CLASSIFIED
from ..structures import CellDetections, MaskCrop

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


def preview_polygons(crop: MaskCrop, scale: float) -> List[np.ndarray]:
    """The outlines of a mask at ``scale``, as Visualizer takes polygon masks (flat x, y lists)."""
    small = crop.scaled(scale)
    if small.area == 0:
        return []
    contours, _ = cv2.findContours(small.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(small.x, small.y))
    return [c.reshape(-1).astype(np.float64) + 0.5 for c in contours if len(c) >= 3]


def preview_mask(detections: CellDetections, indices: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """The union of the masks at ``indices``, drawn at the size ``shape`` of a preview."""
    scale = shape[1] / detections.image_size[1]
    canvas = np.zeros(shape, dtype=bool)
    for i in indices:
        detections.masks[i].scaled(scale).paste(canvas)
    return canvas


def draw_overlay(preview: np.ndarray, detections: CellDetections, metadata: Metadata) -> np.ndarray:
    """Detectron2's Visualizer drawing of ``detections`` over ``preview``, the image (BGR) scaled to
    the size to draw at; masks are drawn as outlines scaled to it, so a slide region's thousands of
    cells never need a full-size mask each. Each caption starts with ``#k``, the detection's row index
    in its image (the ``index`` of cells.csv and the case report's galleries), so a cell seen here is
    found there. Cells the classifier labelled are coloured and captioned by its answer and the myeloma
    probability ("#3 myeloma 0.93" in red, "#4 other 0.12" in green: both numbers are the probability
    of myeloma, not a confidence in the label); other detections keep the class name and detector score.
    Each cell's own nucleus, where the model predicts one, is outlined inside it in the cell's colour."""
    scale = preview.shape[1] / detections.image_size[1]
    visualizer = Visualizer(preview[:, :, ::-1], metadata=metadata, scale=1.0)
    thing_colours = metadata.get("thing_colors", None)
    labels, probs = detections.labels, detections.probs
    captions, colours, polygons, boxes, drawn_indices = [], [], [], [], []
    for index, (cls, score) in enumerate(zip(detections.classes.tolist(), detections.scores.tolist())):
        outline = preview_polygons(detections.masks[index], scale)
        if not outline:
            continue
        label = NOT_CLASSIFIED if labels is None else int(labels[index])
        if label == NOT_CLASSIFIED:
            captions.append(f"#{index} {metadata.thing_classes[cls]} {score:.0%}")
            colours.append(tuple(c / 255 for c in (thing_colours[cls] if thing_colours else UNLABELLED_COLOUR)))
        else:
            prob = f" {probs[index]:.2f}" if probs is not None else ""
            captions.append(f"#{index} " + ("myeloma" if label == 1 else "other") + prob)
            colours.append(MYELOMA_COLOURS[label])
        polygons.append(outline)
        boxes.append(detections.boxes[index] * scale)
        drawn_indices.append(index)
    if not polygons:
        return visualizer.output.get_image()[:, :, ::-1]
    visualizer.overlay_instances(masks=polygons, boxes=np.array(boxes), labels=captions, assigned_colors=colours,
                                 alpha=0.4)
    for index, colour in zip(drawn_indices, colours) if detections.nuclei is not None else ():
        for contour in preview_polygons(detections.nuclei[index], scale):
            visualizer.draw_polygon(contour.reshape(-1, 2), colour, alpha=0.0)
    return visualizer.output.get_image()[:, :, ::-1]
