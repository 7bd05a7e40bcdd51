"""SegPC-2021 evaluation of a Detectron2 model on a registered dataset (a ``DatasetEvaluator``)."""
import json
import logging
import os
from collections import Counter, OrderedDict
from typing import Any, Dict, Hashable, List, Optional

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.masks import rle_to_mask
from ..data.segpc_format import resize_to_submission
from ..structures import NUCLEUS_MASKS
from .segpc_metrics import ImageMatch, aggregate, match_image, nucleus_score
from .submission import complete_cell

logger = logging.getLogger(__name__)


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
        """Matches each record of ``inputs`` (its ``"image_id"``) with its output's ``"instances"``: R
        detections at the record's H x W, any device, as
        :meth:`~detectron2_myeloma.structures.CellDetections.to_instances` gives them. Read are
        ``pred_classes`` ((R,) int64), ``scores`` ((R,) float32), ``pred_masks`` ((R, H, W) bool) and,
        where present, ``pred_nucleus_masks`` ((R, H, W) bool)."""
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
