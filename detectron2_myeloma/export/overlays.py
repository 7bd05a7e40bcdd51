"""Pictures of predictions: Detectron2 Visualizer overlays captioned by the cell classifier's answer,
and colour splashes (cells in colour, the rest grey), scaled for viewing."""
from typing import Optional, Tuple

import cv2
import numpy as np
from detectron2.data import Metadata
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

from ..classifier.labels import NOT_CLASSIFIED

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
