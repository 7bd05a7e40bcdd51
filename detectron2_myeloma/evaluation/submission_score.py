"""Scoring a SegPC-2021 ``submission.txt`` against a ground-truth ``y/`` folder, as the challenge did,
with a report of every line that could not be scored (``tools/score_segpc.py``)."""
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..data.report import DatasetError
from ..data.segpc_format import (
    NUCLEUS_VALUE,
    SubmissionLineError,
    iter_submission,
    read_segpc_mask,
    gt_mask_files,
    resize_to_submission,
    shorten,
)
from .segpc_metrics import SegPCScore, aggregate, match_image, nucleus_score

logger = logging.getLogger(__name__)

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
        """(cells, nuclei) of an image as (1080, 1440) bool masks in the submission frame; cells without
        a nucleus have none."""
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


def load_gt_dir(y_dir: str) -> Dict[str, List[np.ndarray]]:
    """{image id: HxW uint8 0/20/40 masks, ordered by cell index} of a SegPC ``y/`` folder, at their
    stored size."""
    return {image_id: [read_segpc_mask(p) for p in paths] for image_id, paths in gt_mask_files(y_dir).items()}
