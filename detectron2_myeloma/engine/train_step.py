"""The training step object a trainer runs, chosen by the precision policy."""
from typing import Iterable

import torch
from detectron2.config import CfgNode
from detectron2.engine import AMPTrainer, SimpleTrainer

from ..modeling.precision import training_precision
from .cpu import CPUAMPTrainer


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
