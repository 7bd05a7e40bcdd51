#!/usr/bin/env python
"""Train and evaluate R-Mask R-CNN / Mask R-CNN on cell datasets, in Detectron2's style.

    tools/train_net.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn.yaml
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    tools/train_net.py --config-file ... --num-gpus 8     # or --num-machines/--machine-rank/--dist-url

The trainer and its evaluators: detectron2_myeloma/engine/trainer.py.

A bad config, dataset or weights file is reported in one line with exit status 1 (tracebacks:
DETECTRON2_MYELOMA_DEBUG=1).
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import sys

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup, hooks, launch
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from detectron2_myeloma import load_config
from detectron2_myeloma.checkpoint import MyelomaCheckpointer
from detectron2_myeloma.data.catalog import check_dataset_names
from detectron2_myeloma.utils.device import configure_cpu_math
from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.engine.trainer import Trainer
from detectron2_myeloma.modeling.precision import log_precision_policy
from detectron2_myeloma.utils.device import available_device
from detectron2_myeloma.utils.errors import InputError


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    if args.eval_only and not cfg.MODEL.WEIGHTS:
        raise InputError(f"{args.config_file}: --eval-only needs MODEL.WEIGHTS (a trained checkpoint or a "
                         "shipped model): an untrained detector's scores mean nothing")
    if not args.eval_only:
        check_dataset_names(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    check_dataset_names(cfg.DATASETS.TEST, "DATASETS.TEST")
    cfg.MODEL.DEVICE = available_device(cfg.MODEL.DEVICE)
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
        MyelomaCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        trainer.register_hooks([hooks.EvalHook(0, lambda: Trainer.test_with_TTA(cfg, trainer.model))])
    return trainer.train()


@reports_input_errors
def run(args) -> int:
    """``main`` in each process; the exit status (``launch`` drops return values)."""
    main(args)
    return 0


def exit_on_error(args) -> None:
    status = run(args)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(exit_on_error, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
