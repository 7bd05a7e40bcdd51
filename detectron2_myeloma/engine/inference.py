"""Evaluation on the tools' path: the records of a dataset predicted as ``tools/predict.py`` and
``make_submission.py`` predict image files, so that the scores are those of what the tools write."""
from typing import Any, Dict, List

import torch
from detectron2.config import CfgNode
from torch.nn.parallel import DistributedDataParallel

from ..data.classes import cell_and_nucleus_classes, model_metadata
from ..data.regions import ArrayRegions
from ..structures import CellScale
from .predictor import OriginalImagePredictor
from .tiling import TiledPredictor


class DatasetPredictor(torch.nn.Module):
    """A detector behind :class:`~.tiling.TiledPredictor`, as the model that Detectron2's
    ``inference_on_dataset`` runs: each input (:func:`~detectron2_myeloma.data.mapper.original_image_mapper`:
    a record's original image) is predicted at its cell scale (the record's ``cell_diameter``, else as the
    tools decide it), tile by tile where it is larger than a tile, fragments dropped, post-hooks run,
    with test-time augmentation when ``augment``. Each output holds ``"instances"`` (full-size masks, for
    Detectron2's evaluators) and ``"cells"`` (the :class:`~detectron2_myeloma.structures.CellDetections`
    the tools write from).

    ``model`` is used as it is (weights loaded, DistributedDataParallel unwrapped); its training mode is
    this module's, so that ``inference_on_dataset`` switches it to evaluation and back.
    """

    def __init__(self, model: torch.nn.Module, cfg: CfgNode, augment: bool = False):
        super().__init__()
        self.model = model.module if isinstance(model, DistributedDataParallel) else model
        cfg = cfg.clone()
        cfg.defrost()
        cfg.TEST.AUG.ENABLED = augment
        cell_class, _ = cell_and_nucleus_classes(model_metadata(cfg).thing_classes)
        self.predictor = TiledPredictor(OriginalImagePredictor(cfg, self.model), cfg, cell_class)
        self.train(self.model.training)

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Records with their ``"image"`` (HxWx3 uint8 BGR, at the file's resolution) -> per record,
        ``"instances"`` in those H x W pixels (``pred_masks`` (N, H, W) bool, ``pred_boxes`` (N, 4) float32
        XYXY, ``scores`` (N,) float32, ``pred_classes`` (N,) int64; the nuclei and the classifier's fields
        where the model has them) and ``"cells"``, the same detections."""
        images = []
        for inputs in batched_inputs:
            regions = ArrayRegions(inputs["file_name"], inputs["image"])
            diameter = inputs.get("cell_diameter")
            images.append((regions, CellScale(float(diameter), "given", "the dataset record") if diameter
                           else self.predictor.cell_scale(regions)))
        return [{"instances": cells.to_instances(), "cells": cells} for cells in self.predictor.predict_all(images)]
