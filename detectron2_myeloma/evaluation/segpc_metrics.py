"""The SegPC-2021 score, computed exactly as the challenge did, plus numbers that expose false positives.

The official mIoU (see ``segpc_format``): every mask is resized (nearest) to the 1080x1440 submission
frame; each ground-truth cell takes its best IoU over all predicted instances of its image; the score is
the mean of those best IoUs over all ground-truth cells. Extra predictions cost nothing there, so a
score of record is reported next to precision/recall/F1 at IoU 0.5 (one-to-one matching) and, when
predictions carry scores, COCO-style AP.

Work is split per image (:func:`match_image` -> :class:`ImageMatch`, a few small arrays) and then
aggregated (:func:`aggregate`), so that neither the CLI nor the evaluator ever holds more than one
image's masks. The submission-file scorer (:mod:`.submission_score`) and the Detectron2 evaluator
(:mod:`.segpc_evaluator`) both score through here.
"""
import itertools
import logging
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Hashable, Mapping, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from ..data.segpc_format import SUBMISSION_SHAPE, resize_to_submission

logger = logging.getLogger(__name__)

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class ImageMatch:
    """Everything the metrics need from one image: GT x prediction IoUs, prediction scores, and the
    pixel counts of the semantic masks (union of GT cells vs union of predicted instances) in the
    submission frame."""

    ious: np.ndarray  # (gt cells, predictions) float64
    scores: Optional[np.ndarray]  # (predictions,) float64, or None when the predictions carry no scores
    true_pos: int
    false_pos: int
    false_neg: int


@dataclass
class SegPCScore:
    """Aggregated scores; all fractions in [0, 1]. ``ap50``/``ap`` are None without prediction scores."""

    miou: float  # the official SegPC-2021 score
    mean_dice: float  # Dice of each GT cell with its best-IoU prediction, averaged over cells
    pixel_accuracy: float  # semantic cell mask, per image then averaged over images
    semantic_iou: float
    semantic_rmse: float
    precision50: float  # one-to-one matching at IoU >= 0.5
    recall50: float
    f1_50: float
    ap50: Optional[float]
    ap: Optional[float]  # COCO AP@[.5:.95]
    gt_cells: int
    predictions: int
    images: int
    # Where the mIoU falls short of 1, split three ways (they sum to 1 - miou): cells without a
    # prediction of IoU >= MATCH_IOU that are merged (their best prediction overlaps another GT cell by
    # MERGE_IOU or more) or missed (the others), and the boundaries of the matched cells.
    loss_missed: float = float("nan")
    loss_merged: float = float("nan")
    loss_boundary: float = float("nan")
    missed_cells: int = 0
    merged_cells: int = 0
    # The same score of the nuclei: each annotated nucleus (value 40) against the nuclei of the submitted
    # instances; None where the ground truth has no nucleus.
    nucleus_miou: Optional[float] = None
    per_image: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> "OrderedDict[str, float]":
        """Scalar metrics under display names (per-image scores stay in ``per_image``)."""
        names = OrderedDict(
            [("mIoU", "miou"), ("nucleus_mIoU", "nucleus_miou"), ("mDice", "mean_dice"),
             ("P@0.5", "precision50"), ("R@0.5", "recall50"), ("F1@0.5", "f1_50"), ("AP50", "ap50"), ("AP", "ap"),
             ("pixel_accuracy", "pixel_accuracy"),
             ("semantic_IoU", "semantic_iou"), ("semantic_RMSE", "semantic_rmse"),
             ("gt_cells", "gt_cells"), ("predictions", "predictions"), ("images", "images"),
             ("loss_missed", "loss_missed"), ("loss_merged", "loss_merged"), ("loss_boundary", "loss_boundary"),
             ("missed_cells", "missed_cells"), ("merged_cells", "merged_cells")]
        )
        values = asdict(self)
        return OrderedDict((k, values[a]) for k, a in names.items() if values[a] is not None)


def _pair_ious(gt_cells: Sequence[np.ndarray], pred_cells: Sequence[np.ndarray]) -> np.ndarray:
    """(gt, pred) IoU matrix of boolean masks, by pycocotools on their run-length encodings: integer
    pixel counts and one float64 division each, as exact as counting pixels (one mask at a time is
    expanded to bytes, so memory does not grow with the number of predictions)."""
    if not len(gt_cells) or not len(pred_cells):
        return np.zeros((len(gt_cells), len(pred_cells)))
    gt_rles, pred_rles = ([mask_util.encode(np.asfortranarray(m[:, :, None], dtype=np.uint8))[0] for m in masks]
                          for masks in (gt_cells, pred_cells))
    ious = np.asarray(mask_util.iou(gt_rles, pred_rles, [0] * len(pred_rles)), dtype=np.float64)
    return np.nan_to_num(ious.reshape(len(gt_cells), len(pred_cells)))  # two empty masks: 0/0 -> 0


def match_image(
    gt_cells: Sequence[np.ndarray], pred_cells: Sequence[np.ndarray], scores: Optional[Sequence[float]] = None
) -> ImageMatch:
    """Compare one image's boolean GT cells and predicted instances, both in the submission frame.

    Args:
        gt_cells: G (1080, 1440) bool masks, one per ground-truth cell.
        pred_cells: P (1080, 1440) bool masks, one per predicted instance.
        scores: the P predictions' scores, or None.

    Returns:
        The image's :class:`ImageMatch`: (G, P) float64 IoUs, (P,) float64 scores or None, and the
        pixel counts of the two unions.
    """
    for mask in itertools.chain(gt_cells, pred_cells):
        if mask.shape != SUBMISSION_SHAPE or mask.dtype != bool:
            raise ValueError(f"masks must be boolean {SUBMISSION_SHAPE}; got {mask.dtype} {mask.shape}")
    if scores is not None and len(scores) != len(pred_cells):
        raise ValueError(f"{len(scores)} scores for {len(pred_cells)} predictions")
    ious = _pair_ious(gt_cells, pred_cells)

    gt_union = np.logical_or.reduce(gt_cells) if len(gt_cells) else np.zeros(SUBMISSION_SHAPE, bool)
    pred_union = np.logical_or.reduce(pred_cells) if len(pred_cells) else np.zeros(SUBMISSION_SHAPE, bool)
    true_pos = int(np.count_nonzero(gt_union & pred_union))
    return ImageMatch(
        ious=ious,
        scores=None if scores is None else np.asarray(scores, dtype=np.float64),
        true_pos=true_pos,
        false_pos=int(np.count_nonzero(pred_union)) - true_pos,
        false_neg=int(np.count_nonzero(gt_union)) - true_pos,
    )


MATCH_IOU = 0.5  # a GT cell whose best prediction reaches this is matched (its shortfall: boundary)
MERGE_IOU = 0.2  # an unmatched cell and another one both overlapping its best prediction this much: merged


def _shortfall_kinds(ious: np.ndarray) -> np.ndarray:
    """Per GT cell of one image: 0 matched, 1 missed, 2 merged (see ``SegPCScore.loss_*``)."""
    kinds = np.zeros(ious.shape[0], dtype=np.int64)
    if not ious.shape[1]:
        kinds[:] = 1
        return kinds
    best_pred = ious.argmax(axis=1)
    for g, p in enumerate(best_pred):
        if ious[g, p] >= MATCH_IOU:
            continue
        others = np.delete(ious[:, p], g)
        kinds[g] = 2 if ious[g, p] >= MERGE_IOU and others.size and others.max() >= MERGE_IOU else 1
    return kinds


def _greedy_matches(ious: np.ndarray, threshold: float) -> int:
    """Number of one-to-one GT/prediction pairs with IoU >= threshold, taking the best pairs first."""
    gts, preds = np.nonzero(ious >= threshold)
    order = np.argsort(-ious[gts, preds], kind="stable")
    used_gt, used_pred = set(), set()
    for g, p in zip(gts[order], preds[order]):  # loops over candidate pairs, a handful per cell
        if g not in used_gt and p not in used_pred:
            used_gt.add(g)
            used_pred.add(p)
    return len(used_gt)


def _coco_ap(matches: Sequence[ImageMatch], threshold: float, total_gt: int) -> float:
    """COCO AP at one IoU threshold: predictions in score order take the best still-free GT cell with
    IoU >= threshold; precision made monotone and sampled at 101 recall points."""
    if not sum(len(m.scores) for m in matches):
        return 0.0
    all_scores, all_tp = [], []
    for match in matches:
        order = np.argsort(-match.scores, kind="mergesort")
        free = np.ones(match.ious.shape[0], dtype=bool)
        tp = np.zeros(len(order), dtype=bool)
        for rank, p in enumerate(order):  # loops over predictions
            allowed = free & (match.ious[:, p] >= threshold)
            if allowed.any():
                free[np.argmax(np.where(allowed, match.ious[:, p], -1.0))] = False
                tp[rank] = True
        all_scores.append(match.scores[order])
        all_tp.append(tp)
    scores = np.concatenate(all_scores)
    tp = np.concatenate(all_tp)[np.argsort(-scores, kind="mergesort")]
    tp_cum = np.cumsum(tp)
    recall = tp_cum / total_gt
    precision = tp_cum / np.arange(1, len(tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # precision envelope
    at = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def aggregate(matches: Mapping[Hashable, ImageMatch]) -> SegPCScore:
    """Turn per-image matches into the score; every image is one that has ground truth."""
    best = [m.ious.max(axis=1) if m.ious.shape[1] else np.zeros(m.ious.shape[0]) for m in matches.values()]
    best_all = np.concatenate(best) if best else np.zeros(0)
    gt_cells = best_all.size
    predictions = sum(m.ious.shape[1] for m in matches.values())
    nan = float("nan")
    pixels = SUBMISSION_SHAPE[0] * SUBMISSION_SHAPE[1]

    per_image: Dict[str, Dict[str, Any]] = {}
    accuracy, sem_iou, rmse = [], [], []
    for (image_id, match), cell_best in zip(matches.items(), best):
        errors = match.false_pos + match.false_neg
        union = match.true_pos + errors
        accuracy.append(1.0 - errors / pixels)
        sem_iou.append(match.true_pos / union if union else 1.0)
        rmse.append(math.sqrt(errors / pixels))
        per_image[str(image_id)] = {
            "mIoU": float(cell_best.mean()) if cell_best.size else None,
            "gt_cells": int(cell_best.size),
            "predictions": int(match.ious.shape[1]),
            "matched@0.5": _greedy_matches(match.ious, 0.5),
            "semantic_IoU": sem_iou[-1],
        }

    matched = sum(v["matched@0.5"] for v in per_image.values())
    precision = matched / predictions if predictions else 0.0
    recall = matched / gt_cells if gt_cells else nan
    f1 = 2 * matched / (predictions + gt_cells) if predictions + gt_cells else nan

    ap50 = ap = None
    if matches and all(m.scores is not None for m in matches.values()) and gt_cells:
        per_threshold = [_coco_ap(list(matches.values()), t, gt_cells) for t in COCO_IOU_THRESHOLDS]
        ap50, ap = per_threshold[0], float(np.mean(per_threshold))

    kinds = np.concatenate([_shortfall_kinds(m.ious) for m in matches.values()]) if matches else np.zeros(0)
    shortfall = 1.0 - best_all

    def loss(kind: int) -> float:
        return float(shortfall[kinds == kind].sum() / gt_cells) if gt_cells else nan

    return SegPCScore(
        loss_missed=loss(1), loss_merged=loss(2), loss_boundary=loss(0),
        missed_cells=int((kinds == 1).sum()), merged_cells=int((kinds == 2).sum()),
        miou=float(best_all.mean()) if gt_cells else nan,
        mean_dice=float(np.mean(2 * best_all / (1 + best_all))) if gt_cells else nan,
        pixel_accuracy=float(np.mean(accuracy)) if matches else nan,
        semantic_iou=float(np.mean(sem_iou)) if matches else nan,
        semantic_rmse=float(np.mean(rmse)) if matches else nan,
        precision50=precision,
        recall50=recall,
        f1_50=f1,
        ap50=ap50,
        ap=ap,
        gt_cells=gt_cells,
        predictions=predictions,
        images=len(matches),
        per_image=per_image,
    )


def score_segpc(
    gt: Mapping[str, Sequence[np.ndarray]],
    predictions: Mapping[str, Sequence[np.ndarray]],
    scores: Optional[Mapping[str, Sequence[float]]] = None,
) -> SegPCScore:
    """Score predictions against SegPC ground truth.

    ``gt``: {image id: HxW 0/20/40 uint8 (or bool) masks at any size}, one per cell. ``predictions``:
    {image id: (1080, 1440) bool instance masks (nucleus U cytoplasm)}; images without an entry score 0 for
    their cells, and predictions for images absent from ``gt`` are ignored (with a warning), as the
    official scorer iterates over the ground truth. ``scores`` (same layout as ``predictions``) enables
    AP.
    """
    unknown = sorted(set(predictions) - set(gt))
    if unknown:
        logger.warning("ignoring predictions for %d images without ground truth: %s", len(unknown),
                       ", ".join(map(str, unknown[:5])))
    matches = OrderedDict()
    for image_id, gt_masks in gt.items():
        preds = list(predictions.get(image_id, []))
        image_scores = None
        if scores is not None:
            image_scores = scores.get(image_id, [])
        matches[image_id] = match_image([resize_to_submission(m) for m in gt_masks], preds, image_scores)
    return aggregate(matches)


def nucleus_score(matches: Mapping[Hashable, ImageMatch]) -> Optional[float]:
    """The mIoU of the annotated nuclei in ``matches``; None when there are none."""
    return aggregate(matches).miou if any(m.ious.shape[0] for m in matches.values()) else None
