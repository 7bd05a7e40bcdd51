"""Training and evaluation on CUDA (``pytest -m cuda``; skipped where PyTorch sees no GPU): Detectron2's
AMPTrainer as the precision policy picks it, a short run whose losses fall, and COCO + SegPC evaluation."""
import math

import numpy as np
import pytest
import torch
from detectron2.engine import AMPTrainer
from detectron2.utils.env import seed_all_rng
from test_train_net import NO_AUGMENTATION, loss_history, small_cfg

from detectron2_myeloma.engine.trainer import Trainer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_amp_training_and_evaluation_on_cuda(tmp_path):
    seed_all_rng(1)
    cfg = small_cfg(tmp_path, max_iter=60, config="configs/SegPC/rmask_rcnn_lite2_fpn.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", None, "SOLVER.CHECKPOINT_PERIOD", 1000,
                         "TEST.EVAL_PERIOD", 0, "DATASETS.TEST", ("segpc_mini_val",)] + NO_AUGMENTATION)
    trainer = Trainer(cfg)
    if torch.cuda.get_device_capability() >= (7, 0):
        assert type(trainer._trainer) is AMPTrainer
        assert trainer._trainer.precision in (torch.float16, torch.bfloat16)
    trainer.register_hooks([])
    trainer.resume_or_load(resume=False)
    trainer.train()
    total = loss_history(trainer, "total_loss")
    assert len(total) == 60 and np.isfinite(total).all()
    assert total[-10:].mean() < 0.5 * total[:10].mean(), total

    results = Trainer.test(cfg, trainer.model)
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert {"bbox", "segm", "segpc"} <= set(results)
    assert results["segpc"]["gt_cells"] == 26 and math.isfinite(results["segpc"]["mIoU"])
