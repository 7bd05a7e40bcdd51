"""The detector's trainer: Detectron2's ``DefaultTrainer`` with the project's data, evaluation and
precision, and distributed training on CPU processes as well as GPUs; the training step its precision
policy picks, and the writer hook that prints the first iterations.

Detectron2's ``AMPTrainer`` asserts CUDA and scales float16 gradients with CUDA's ``GradScaler``.
bfloat16 keeps float32's exponent range, so gradients cannot underflow the way float16 ones do and the
plain SGD step is correct (:class:`CPUAMPTrainer`). Whether bfloat16 is used at all is the precision
policy's choice (:mod:`detectron2_myeloma.modeling.precision`).
"""
import logging
import os
import time
import weakref
from collections import OrderedDict
from typing import Any, Iterable, Optional, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.events import EventWriter
from detectron2.utils.logger import setup_logger

from ..checkpoint import MyelomaCheckpointer
from ..data.mapper import build_cell_mapper, original_image_mapper
from ..evaluation import SegPCEvaluator
from ..modeling.precision import autocast, training_precision
from ..utils.atomic import write_json_atomic
from ..utils.device import images_per_batch
from .inference import DatasetPredictor

logger = logging.getLogger(__name__)

EVALUATION_JSON = "evaluation.json"  # in OUTPUT_DIR/inference: the latest evaluation's results


class CPUAMPTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose forward pass runs under CPU bfloat16 autocast.

    Only the forward pass is autocast (PyTorch's guidance): backward ops run in the dtype their forward
    op used, and the optimizer updates the float32 master weights.
    """

    def run_step(self) -> None:
        assert self.model.training, "[CPUAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with autocast("cpu", torch.bfloat16):
            loss_dict = self.model(data)
        losses = sum(loss.float() for loss in loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


def build_train_step(cfg: CfgNode, model: torch.nn.Module, data_loader: Iterable,
                     optimizer: torch.optim.Optimizer) -> SimpleTrainer:
    """``SimpleTrainer`` in float32, ``CPUAMPTrainer`` for bfloat16 on the CPU, Detectron2's
    ``AMPTrainer`` (gradient scaler) on CUDA, as ``SOLVER.AMP.ENABLED`` resolves on ``MODEL.DEVICE``."""
    precision = training_precision(cfg)
    if not precision.enabled:
        return SimpleTrainer(model, data_loader, optimizer)
    if precision.device_type == "cpu":
        return CPUAMPTrainer(model, data_loader, optimizer)
    return AMPTrainer(model, data_loader, optimizer, precision=precision.dtype)


class PeriodicWriterFromStart(hooks.PeriodicWriter):
    """Detectron2's ``PeriodicWriter`` that also writes after iterations 1, 2, 5 and 10: a CPU run at
    about 2 s per iteration would otherwise print nothing (no loss, no ETA) for its first 20."""

    EARLY_ITERS = (1, 2, 5, 10)

    def __init__(self, writers: Sequence[EventWriter], period: int = 20):
        super().__init__(writers, period)
        self.writers, self.period = list(writers), period  # its own: the parent's are private

    def after_step(self) -> None:
        super().after_step()
        done = self.trainer.iter + 1
        written = done % self.period == 0 or done == self.trainer.max_iter
        if done in self.EARLY_ITERS and not written:
            for writer in self.writers:
                writer.write()


class Trainer(DefaultTrainer):
    """DefaultTrainer with the cell mapper, the COCO + SegPC evaluators, and the training step the
    precision policy chooses for ``SOLVER.AMP.ENABLED`` (Detectron2's ``AMPTrainer`` is CUDA-only).
    Every evaluation (periodic, final or ``--eval-only``) is also saved as json, for scripts that run
    ``tools/train_net.py`` and want its numbers.

    ``__init__`` is ``DefaultTrainer.__init__`` with two differences: the step object comes from
    :func:`build_train_step`, and a CPU model is wrapped in ``DistributedDataParallel`` without
    ``device_ids`` (which DDP accepts for GPU modules only), so that ``--num-gpus N`` on a machine
    without GPUs trains N gloo processes. Metrics are printed from the first iteration on.
    """

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cpu = torch.device(cfg.MODEL.DEVICE).type == "cpu"
        model = create_ddp_model(model, broadcast_buffers=False, **({"device_ids": None} if on_cpu else {}))
        self._trainer = build_train_step(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = MyelomaCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        """``DefaultTrainer.build_model``, with every parameter outside ``SOLVER.TRAINABLE_PREFIXES`` (when
        given) frozen; the optimizer then holds only the others. A prefix matching nothing is an error."""
        model = super().build_model(cfg)
        prefixes = tuple(cfg.SOLVER.TRAINABLE_PREFIXES)
        if prefixes:
            names = [name for name, _ in model.named_parameters()]
            unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
            if unmatched:
                raise ValueError(f"SOLVER.TRAINABLE_PREFIXES {unmatched}: no parameter of the model starts with it")
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name.startswith(prefixes))
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            logger.info("training %.2f M of the model's %.2f M parameters (SOLVER.TRAINABLE_PREFIXES %s)",
                        trainable / 1e6, sum(p.numel() for p in model.parameters()) / 1e6, list(prefixes))
        return model

    def build_writers(self):
        """``DefaultTrainer``'s writers, kept for :meth:`build_hooks`."""
        self.writers = super().build_writers()
        return self.writers

    def build_hooks(self):
        """``DefaultTrainer``'s hooks, its periodic writer (every 20 iterations, on the main process)
        writing after the first iterations too (:class:`PeriodicWriterFromStart`)."""
        return [PeriodicWriterFromStart(self.writers, period=20) if type(h) is hooks.PeriodicWriter else h
                for h in super().build_hooks()]

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
    def test(cls, cfg: CfgNode, model, evaluators=None):
        """``DefaultTrainer.test`` through the tools' predictor (:class:`~.inference.DatasetPredictor`: cell
        scale, tiles, fragment rule, post-hooks), whose results the main process also writes to
        ``OUTPUT_DIR/inference/evaluation.json`` (overwritten by each evaluation)."""
        results = super().test(cfg, DatasetPredictor(model, cfg) if len(cfg.DATASETS.TEST) else model, evaluators)
        if comm.is_main_process():
            write_json_atomic(results, os.path.join(cfg.OUTPUT_DIR, "inference", EVALUATION_JSON), indent=1)
        return results

    @classmethod
    def test_with_TTA(cls, cfg: CfgNode, model) -> "OrderedDict[str, Any]":
        """The evaluation of :meth:`test` with test-time augmentation (:class:`~.tta.CellTTA`), written
        to ``OUTPUT_DIR/inference_TTA``, keyed by each test dataset's name with a "_TTA" suffix."""
        logger.info("Running inference with test-time augmentation ...")
        evaluators = [cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
                      for name in cfg.DATASETS.TEST]
        results = super(Trainer, cls).test(cfg, DatasetPredictor(model, cfg, augment=True), evaluators)
        if len(cfg.DATASETS.TEST) == 1:  # DefaultTrainer.test returns one dataset's results unnamed
            results = OrderedDict([(cfg.DATASETS.TEST[0], results)])
        results = OrderedDict((f"{name}_TTA", value) for name, value in results.items())
        if comm.is_main_process():
            write_json_atomic(results, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", EVALUATION_JSON), indent=1)
        return results

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_detection_train_loader(cfg, mapper=build_cell_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """Each record with its original image (:class:`~.inference.DatasetPredictor` resizes it),
        ``TEST.IMS_PER_BATCH`` records per batch."""
        return build_detection_test_loader(cfg, dataset_name, mapper=original_image_mapper,
                                           batch_size=images_per_batch(cfg.TEST.IMS_PER_BATCH, cfg.MODEL.DEVICE))
