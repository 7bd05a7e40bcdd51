"""The detector's trainer: Detectron2's ``DefaultTrainer`` with the project's data, evaluation and
precision."""
import os
from typing import Optional

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

from ..data.mapper import build_cell_mapper
from ..evaluation import SegPCEvaluator
from .train_step import build_train_step


class Trainer(DefaultTrainer):
    """DefaultTrainer with the cell mapper, the COCO + SegPC evaluators, and the training step the
    precision policy chooses for ``SOLVER.AMP.ENABLED`` (Detectron2's ``AMPTrainer`` is CUDA-only)."""

    def __init__(self, cfg: CfgNode):
        super().__init__(cfg)
        step = self._trainer
        self._trainer = build_train_step(cfg, step.model, step.data_loader, step.optimizer)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        """COCOEvaluator (bbox + segm, ``TEST.DETECTIONS_PER_IMAGE`` detections) on every dataset, plus
        the SegPC-2021 scorer on SegPC datasets."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluators = [COCOEvaluator(dataset_name, output_dir=output_folder,
                                    max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)]
        if MetadataCatalog.get(dataset_name).evaluator_type == "segpc":
            evaluators.append(SegPCEvaluator(dataset_name, output_dir=output_folder,
                                             score_threshold=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST))
        return DatasetEvaluators(evaluators)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_detection_train_loader(cfg, mapper=build_cell_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_cell_mapper(cfg, is_train=False))
