#!/usr/bin/env python
"""Train and evaluate R-Mask R-CNN / Mask R-CNN on cell datasets, in Detectron2's style.

    tools/train_net.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn.yaml
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    tools/train_net.py --config-file ... --num-gpus 8     # or --num-machines/--machine-rank/--dist-url

Evaluation: COCOEvaluator (bbox + segm, max detections from TEST.DETECTIONS_PER_IMAGE) on every test
dataset, plus the SegPC-2021 scorer on SegPC datasets.
"""
import os

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, verify_results
from detectron2.utils.logger import setup_logger

from detectron2_myeloma import add_myeloma_config
from detectron2_myeloma.data.mapper import build_cell_mapper
from detectron2_myeloma.engine.cpu import configure_cpu_math
from detectron2_myeloma.engine.train_step import build_train_step
from detectron2_myeloma.modeling.precision import log_precision_policy
from detectron2_myeloma.evaluation import SegPCEvaluator


class Trainer(DefaultTrainer):
    """DefaultTrainer with the cell mapper, the COCO + SegPC evaluators, and the training step the
    precision policy chooses for ``SOLVER.AMP.ENABLED`` (Detectron2's ``AMPTrainer`` is CUDA-only)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        step = self._trainer
        self._trainer = build_train_step(cfg, step.model, step.data_loader, step.optimizer)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluators = [COCOEvaluator(dataset_name, output_dir=output_folder,
                                    max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)]
        if MetadataCatalog.get(dataset_name).evaluator_type == "segpc":
            evaluators.append(SegPCEvaluator(dataset_name, output_dir=output_folder,
                                             score_threshold=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST))
        return DatasetEvaluators(evaluators)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_cell_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_cell_mapper(cfg, is_train=False))


def setup(args):
    cfg = get_cfg()
    add_myeloma_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="detectron2_myeloma")
    configure_cpu_math()
    log_precision_policy(cfg, training=not args.eval_only)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS,
                                                                            resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
