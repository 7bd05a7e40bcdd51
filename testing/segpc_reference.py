"""An independent transcription of the SegPC-2021 challenge's scoring, and prediction sets to score
with it: the reference that the project's scorer is tested and benchmarked against."""
from typing import Dict, List, Tuple

import cv2
import numpy as np

from detectron2_myeloma.data.segpc_format import SUBMISSION_SHAPE


def official_miou(gt: Dict[str, List[np.ndarray]], predictions: Dict[str, List[np.ndarray]]) -> float:
    """The challenge's scoring, transcribed loops and all: resize, best IoU per GT cell, mean."""
    total, cells = 0.0, 0
    for image_id, masks in gt.items():
        for mask in masks:
            cell = cv2.resize(mask, (1440, 1080), interpolation=cv2.INTER_NEAREST) > 0
            best = 0.0
            for pred in predictions.get(image_id, []):
                inter = np.logical_and(cell, pred).sum()
                union = np.logical_or(cell, pred).sum()
                best = max(best, inter / union if union else 0.0)
            total += best
            cells += 1
    return total / cells


def disk(center: Tuple[int, int], radius: int) -> np.ndarray:
    """A filled disc in a submission-sized frame."""
    mask = np.zeros(SUBMISSION_SHAPE, np.uint8)
    cv2.circle(mask, center, radius, 1, -1)
    return mask.astype(bool)


def perturbations(cells: Dict[str, List[np.ndarray]], missing_image: str
                  ) -> Dict[str, Dict[str, List[np.ndarray]]]:
    """Named prediction sets made from the true cells: eroded, shifted, dropped, extra (spurious discs
    and a full-frame mask added), merged, missing (``missing_image`` predicted empty), mixed, empty."""
    kernel = np.ones((9, 9), np.uint8)
    eroded = {i: [cv2.erode(m.view(np.uint8), kernel).astype(bool) for m in ms] for i, ms in cells.items()}
    shifted = {i: [np.roll(m, (9, -13), axis=(0, 1)) for m in ms] for i, ms in cells.items()}
    dropped = {i: ms[::2] for i, ms in cells.items()}
    extra = {i: ms + [disk((100, 100), 40), disk((1300, 900), 90), np.ones(SUBMISSION_SHAPE, bool)]
             for i, ms in cells.items()}
    merged = {i: [np.logical_or.reduce(ms)] + ms[:1] for i, ms in cells.items()}
    missing = {i: ms for i, ms in shifted.items() if i != missing_image}
    mixed = {i: eroded[i][:1] + shifted[i][1:2] + extra[i][-2:] for i in cells}
    return {"eroded": eroded, "shifted": shifted, "dropped": dropped, "extra": extra, "merged": merged,
            "missing": missing, "mixed": mixed, "empty": {}}
