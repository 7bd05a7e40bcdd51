"""The SegPC-2021 score, computed exactly as the challenge did, plus numbers that expose false positives.

The official mIoU (see ``segpc_format``): every mask is resized (nearest) to the 1080x1440 submission
frame; each ground-truth cell takes its best IoU over all predicted instances of its image; the score is
the mean of those best IoUs over all ground-truth cells. Extra predictions cost nothing there, so a
score of record is reported next to precision/recall/F1 at IoU 0.5 (one-to-one matching) and, when
predictions carry scores, COCO-style AP.

Work is split per image (:func:`match_image` -> :class:`ImageMatch`, a few small arrays) and then
aggregated (:func:`aggregate`), so that neither the CLI nor the evaluator ever holds more than one
image's masks.
"""
import itertools
import json
import logging
import math
import os
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.masks import rle_to_mask
from ..data.report import DatasetError
from ..data.segpc_format import (
    NUCLEUS_VALUE,
    SUBMISSION_SHAPE,
    SubmissionLineError,
    iter_submission,
    read_segpc_mask,
    gt_mask_files,
    resize_to_submission,
    shorten,
)
from ..structures import NUCLEUS_MASKS
from .submission import complete_cell

logger = logging.getLogger(__name__)

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class ImageMatch:
    """Everything the metrics need from one image: GT x prediction IoUs, prediction scores, and the
    pixel counts of the semantic masks (union of GT cells vs union of predicted instances) in the
    submission frame."""

    ious: np.ndarray  # (gt cells, predictions) float64
    scores: Optional[np.ndarray]  # (predictions,) or None when the predictions carry no scores
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
    """Compare one image's boolean GT cells and predicted instances, both in the submission frame."""
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

    ``gt``: {image id: 0/20/40 masks at any size}, one per cell. ``predictions``: {image id: boolean
    instance masks (nucleus U cytoplasm) in the 1080x1440 frame}; images without an entry score 0 for
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


EXAMPLES = 5  # of each kind of problem, in messages and in the json


def _examples(items: Sequence[str], separator: str = ", ") -> str:
    """The first EXAMPLES items and how many more there are."""
    more = f"{separator}... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return separator.join(items[:EXAMPLES]) + more


def _count(n: int, noun: str) -> str:
    """``"1 line"``, ``"2 lines"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass
class SubmissionReport:
    """What scoring a ``submission.txt`` found besides the score. The official scorer silently scores 0
    for a ground-truth image without a line, ignores a line without ground truth and zeroes the image of
    a line it cannot parse, so that a broken file passes for a weak model; each kind is counted here."""

    path: str
    lines: int = 0  # non-blank lines
    missing: List[str] = field(default_factory=list)  # GT image ids without a line: their cells score 0
    unknown: List[Tuple[int, str]] = field(default_factory=list)  # (line, id) without GT: ignored
    malformed: List[SubmissionLineError] = field(default_factory=list)  # their images score 0

    @property
    def scored_lines(self) -> int:
        return self.lines - len(self.unknown) - len(self.malformed)

    def problems(self) -> List[str]:
        """One line per kind of problem found (none for a clean submission), the first few named."""
        found = []
        if self.missing:
            found.append(f"{_count(len(self.missing), 'ground-truth image')} without a line (their cells "
                         f"score 0): {_examples(self.missing)}")
        if self.unknown:
            lines = [f"line {line} ({shorten(image_id)})" for line, image_id in self.unknown]
            found.append(f"{_count(len(lines), 'line')} whose image has no ground truth (ignored): "
                         f"{_examples(lines)}")
        if self.malformed:
            found.append(f"{_count(len(self.malformed), 'malformed line')} (their images score 0): "
                         + _examples([err.problem for err in self.malformed], "; "))
        return found

    def summary(self) -> str:
        """The block printed before the final ``mIoU`` line."""
        problems = self.problems() or ["no missing, unknown or malformed lines"]
        return "\n".join([f"{self.path}: {_count(self.lines, 'line')}, {self.scored_lines} scored"]
                         + [f"  {problem}" for problem in problems])

    def to_dict(self) -> Dict[str, Any]:
        """Counts and first examples of each kind, for the ``--output`` json."""
        return {
            "file": self.path,
            "lines": self.lines,
            "scored_lines": self.scored_lines,
            "gt_images_without_line": {"count": len(self.missing), "first": self.missing[:EXAMPLES]},
            "lines_without_gt": {"count": len(self.unknown), "first": [
                {"line": line, "image_id": shorten(image_id)} for line, image_id in self.unknown[:EXAMPLES]
            ]},
            "malformed_lines": {"count": len(self.malformed), "first": [
                {"line": err.line, "problem": err.problem} for err in self.malformed[:EXAMPLES]]},
        }


def _refuse_unusable(report: SubmissionReport, y_dir: str, instances: int, strict: bool) -> None:
    """DatasetError for a submission that gives nothing to score (always: no line, no line with ground
    truth, no instance at all) or, when ``strict``, one with any problem of the report."""
    if not report.lines:
        raise DatasetError(report.path, "no lines: the submission is empty")
    if not report.scored_lines:
        why = []
        if report.unknown:
            line, image_id = report.unknown[0]
            why.append(f"{_count(len(report.unknown), 'line')} without ground truth (first: line {line}, "
                       f"image {shorten(image_id)})")
        if report.malformed:
            why.append(f"{_count(len(report.malformed), 'malformed line')} (first: "
                       f"{report.malformed[0].problem})")
        raise DatasetError(report.path, f"no line to score against {y_dir}: {'; '.join(why)}")
    if not instances:
        raise DatasetError(report.path, f"no instance on its {_count(report.scored_lines, 'line')} with "
                                        "ground truth (id-only lines): nothing to score")
    if strict and report.problems():
        raise DatasetError(report.path, report.problems()[0])


def score_submission(y_dir: str, submission: str, strict: bool = False
                     ) -> Tuple[SegPCScore, SubmissionReport]:
    """Score a ``submission.txt`` against a SegPC ``y/`` folder, as the challenge does (no AP: the
    file has no scores), and report what the challenge would pass over in silence
    (:class:`SubmissionReport`, each kind also logged as a warning). One submission line and one image's
    masks are read at a time, so a whole split fits in little memory.

    DatasetError for a submission with nothing to score; with ``strict``, also for a ground-truth image
    without a line, a line without ground truth or a malformed line (the first one met)."""
    gt_files = gt_mask_files(y_dir)

    def gt_cells(image_id: str) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        """(cells, nuclei) of an image in the submission frame; cells without a nucleus have none."""
        masks = [read_segpc_mask(p) for p in gt_files[image_id]]
        nuclei = [m == NUCLEUS_VALUE for m in masks]
        return [resize_to_submission(m) for m in masks], [resize_to_submission(n) for n in nuclei if n.any()]

    report = SubmissionReport(submission)
    matches, nucleus_matches, instances = {}, {}, 0
    for line, image_id, cells in iter_submission(submission, None if strict else report.malformed):
        report.lines += 1
        if image_id not in gt_files:
            if strict:
                raise DatasetError(submission, f"line {line}: image {shorten(image_id)} has no ground "
                                               f"truth in {y_dir}")
            report.unknown.append((line, image_id))
            continue
        cell_masks, nucleus_masks = gt_cells(image_id)
        matches[image_id] = match_image(cell_masks, [nuc | cyt for nuc, cyt in cells])
        nucleus_matches[image_id] = match_image(nucleus_masks, [nuc for nuc, _ in cells])
        instances += len(cells)
    report.lines += len(report.malformed)
    listed = matches.keys() | {err.image_id for err in report.malformed}
    report.missing = [image_id for image_id in gt_files if image_id not in listed]
    _refuse_unusable(report, y_dir, instances, strict)
    for problem in report.problems():
        logger.warning("%s: %s", submission, problem)
    for image_id in gt_files.keys() - matches.keys():
        cell_masks, nucleus_masks = gt_cells(image_id)
        matches[image_id], nucleus_matches[image_id] = match_image(cell_masks, []), match_image(nucleus_masks, [])
    score = aggregate(OrderedDict((image_id, matches[image_id]) for image_id in gt_files))
    score.nucleus_miou = nucleus_score(nucleus_matches)
    return score, report


def nucleus_score(matches: Mapping[Hashable, ImageMatch]) -> Optional[float]:
    """The mIoU of the annotated nuclei in ``matches``; None when there are none."""
    return aggregate(matches).miou if any(m.ious.shape[0] for m in matches.values()) else None


def load_gt_dir(y_dir: str) -> Dict[str, List[np.ndarray]]:
    """{image id: 0/20/40 masks} of a SegPC ``y/`` folder, at their stored size."""
    return {image_id: [read_segpc_mask(p) for p in paths] for image_id, paths in gt_mask_files(y_dir).items()}


class SegPCEvaluator(DatasetEvaluator):
    """SegPC-2021 score of a Detectron2 model on a registered dataset.

    GT cells are the dataset's annotations of class ``cell_class``; predictions of that class with score
    >= ``score_threshold`` are the submitted instances (nucleus predictions, when the dataset has a
    nucleus class, are ignored: the SegPC score is about whole cells). The threshold matters because the
    official mIoU never penalises extra instances: use the one the submission writer uses. AP is
    computed over the kept predictions.

    Each image is matched in ``process`` (on every worker), keeping only its small :class:`ImageMatch`,
    so memory does not grow with the number of predicted masks.

    Where the dataset's cells carry their nucleus (SegPC), ``nucleus_mIoU`` is scored the same way: each
    annotated nucleus against the nuclei of the submitted cells, as the submission writer makes them (the
    model's own ``pred_nucleus_masks``, else the estimation rule of :mod:`.submission`).
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        score_threshold: float = 0.5,
        cell_class: str = "cell",
        distributed: bool = True,
    ):
        classes = list(MetadataCatalog.get(dataset_name).thing_classes)
        if cell_class not in classes:
            raise ValueError(f"dataset {dataset_name} has no class {cell_class!r} (classes: {classes})")
        self._cell_id = classes.index(cell_class)
        self._output_dir = output_dir
        self._score_threshold = score_threshold
        self._distributed = distributed
        cells = {d["image_id"]: [a for a in d.get("annotations", [])
                                 if a["category_id"] == self._cell_id and not a.get("iscrowd", 0)]
                 for d in DatasetCatalog.get(dataset_name)}
        self._gt_annotations = {i: [a["segmentation"] for a in annotations] for i, annotations in cells.items()}
        self._gt_nuclei = {i: [a["nucleus"] for a in annotations if "nucleus" in a]
                           for i, annotations in cells.items()}
        self._scores_nuclei = any(self._gt_nuclei.values())
        self._matches: "OrderedDict[Hashable, ImageMatch]" = OrderedDict()
        self._nucleus_matches: "OrderedDict[Hashable, ImageMatch]" = OrderedDict()
        self._nucleus_sources: Counter = Counter()

    def reset(self) -> None:
        self._matches = OrderedDict()
        self._nucleus_matches = OrderedDict()
        self._nucleus_sources = Counter()

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            gt_cells = [resize_to_submission(rle_to_mask(rle)) for rle in self._gt_annotations[image_id]]
            instances = out["instances"].to("cpu")
            keep = (instances.pred_classes == self._cell_id) & (instances.scores >= self._score_threshold)
            instances = instances[keep]
            pred_cells = [resize_to_submission(m) for m in instances.pred_masks.numpy().astype(bool)]
            self._matches[image_id] = match_image(gt_cells, pred_cells, instances.scores.numpy())
            if self._scores_nuclei:
                gt_nuclei = [resize_to_submission(rle_to_mask(rle)) for rle in self._gt_nuclei[image_id]]
                own = (instances.get(NUCLEUS_MASKS).numpy() if instances.has(NUCLEUS_MASKS) else None)
                pred_nuclei = []
                for i, cell in enumerate(pred_cells):
                    nucleus = resize_to_submission(own[i]) if own is not None else np.zeros_like(cell)
                    parts = complete_cell(cell, nucleus)
                    if parts is not None:
                        pred_nuclei.append(parts.nucleus)
                        self._nucleus_sources[parts.rule] += 1
                self._nucleus_matches[image_id] = match_image(gt_nuclei, pred_nuclei)

    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        matches, nucleus_matches, nucleus_sources = self._matches, self._nucleus_matches, self._nucleus_sources
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather((matches, nucleus_matches, nucleus_sources), dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            matches = OrderedDict(kv for part, _, _ in gathered for kv in part.items())
            nucleus_matches = OrderedDict(kv for _, part, _ in gathered for kv in part.items())
            nucleus_sources = sum((sources for _, _, sources in gathered), Counter())
        if not matches:
            logger.warning("SegPCEvaluator received no predictions")
            return OrderedDict()
        score = aggregate(matches)
        score.nucleus_miou = nucleus_score(nucleus_matches)
        metrics = score.to_dict()
        if score.nucleus_miou is not None:
            logger.info("nuclei of the submitted cells: %s", ", ".join(
                f"{count} {rule}" for rule, count in sorted(nucleus_sources.items())) or "none")
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, "segpc_scores.json"), "w") as f:
                json.dump({"metrics": metrics, "per_image": score.per_image,
                           "nucleus_sources": dict(nucleus_sources)}, f, indent=1)
        logger.info("SegPC-2021 scores: %s", dict(metrics))
        return OrderedDict(segpc=metrics)
