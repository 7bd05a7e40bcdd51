"""tools/train_net.py: a short run on one real bundled image overfits, and --resume picks up an
interrupted run at the right iteration."""
import numpy as np
import pytest
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from detectron2_myeloma import load_config
from detectron2_myeloma.data.datasets.builtin import register_segpc
from detectron2_myeloma.engine.trainer import Trainer

ONE_IMAGE = "test_segpc_one_image"


def small_cfg(output_dir, max_iter, config="configs/SegPC/mask_rcnn_lite2_fpn.yaml"):
    """The shipped config made small: one real image (1997, 3 cells) at 1/6 scale, batch 1, narrow FPN
    and heads (the model structure is the shipped one). Every input has the same 224x224 shape, so
    oneDNN reuses its convolution kernels instead of preparing new ones for each new shape."""
    from detectron2.data import DatasetCatalog

    if ONE_IMAGE not in DatasetCatalog.list():
        register_segpc(ONE_IMAGE, "datasets/segpc_mini/train", image_ids=["1997"])
    return load_config(config, [
        "DATASETS.TRAIN", (ONE_IMAGE,), "DATASETS.TEST", (),
        "INPUT.MIN_SIZE_TRAIN", (256,), "INPUT.MAX_SIZE_TRAIN", 352, "INPUT.CROP.SIZE", [224, 224],
        "MODEL.FPN.OUT_CHANNELS", 64, "MODEL.ROI_MASK_HEAD.CONV_DIM", 64, "MODEL.ROI_BOX_HEAD.FC_DIM", 256,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 100,
        "MODEL.ANCHOR_GENERATOR.SIZES", [[16], [32], [64], [128], [256]],
        "SOLVER.IMS_PER_BATCH", 1, "SOLVER.BASE_LR", 0.004, "SOLVER.WARMUP_ITERS", 5,
        "SOLVER.STEPS", (), "SOLVER.MAX_ITER", max_iter, "DATALOADER.NUM_WORKERS", 0,
        "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(output_dir), "SEED", 1,
    ])


NO_AUGMENTATION = [
    "INPUT.CROP.ENABLED", False, "INPUT.MIN_SIZE_TRAIN", (224,),
    "INPUT.CELL_AUG.HFLIP", False, "INPUT.CELL_AUG.VFLIP", False, "INPUT.CELL_AUG.ROT90", False,
    "INPUT.CELL_AUG.BRIGHTNESS", 0.0, "INPUT.CELL_AUG.CONTRAST", 0.0, "INPUT.CELL_AUG.SATURATION", 0.0,
    "INPUT.CELL_AUG.HUE", 0.0,
]


def loss_history(trainer, name):
    return np.array([value for value, _ in trainer.storage.history(name).values()])


@pytest.mark.parametrize("config", ["configs/SegPC/mask_rcnn_lite2_fpn.yaml",
                                    "configs/SegPC/rmask_rcnn_lite2_fpn.yaml"])
def test_short_run_on_one_real_image_overfits(tmp_path, config):
    """60 iterations on the same 224x298 input (no crops or augmentation, so the model can memorise
    it). The box regression loss may rise while the RPN learns to propose more foreground boxes, so
    the test watches the total and the mask loss, averaged over 10 iterations at each end."""
    seed_all_rng(1)
    cfg = small_cfg(tmp_path, max_iter=60, config=config)
    cfg.merge_from_list(["SOLVER.CHECKPOINT_PERIOD", 1000, "TEST.EVAL_PERIOD", 0] + NO_AUGMENTATION)
    trainer = Trainer(cfg)
    trainer.register_hooks([])
    trainer.resume_or_load(resume=False)
    trainer.train()
    total, mask = loss_history(trainer, "total_loss"), loss_history(trainer, "loss_mask")
    assert len(total) == 60 and np.isfinite(total).all()
    assert total[-10:].mean() < 0.5 * total[:10].mean(), total
    assert mask[-10:].mean() < 0.5 * mask[:10].mean(), mask


class _RecordIterations(HookBase):
    def __init__(self):
        self.iterations = []

    def before_step(self):
        self.iterations.append(self.trainer.iter)


class _Interrupt(HookBase):
    def __init__(self, at):
        self.at = at

    def after_step(self):
        if self.trainer.iter == self.at:
            raise KeyboardInterrupt("simulated interruption")


def test_resume_continues_from_last_checkpoint(tmp_path):
    seed_all_rng(1)
    cfg = small_cfg(tmp_path, max_iter=6)
    cfg.merge_from_list(["SOLVER.CHECKPOINT_PERIOD", 2, "TEST.EVAL_PERIOD", 0,
                         "INPUT.MIN_SIZE_TRAIN", (128,), "INPUT.MAX_SIZE_TRAIN", 176,
                         "INPUT.CROP.SIZE", [96, 96]])
    trainer = Trainer(cfg)
    trainer.register_hooks([_Interrupt(at=4)])
    trainer.resume_or_load(resume=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    # Checkpoints after iterations 1 and 3 (0-based); the run died during iteration 4.
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000003.pth"
    resumed = Trainer(cfg)
    record = _RecordIterations()
    resumed.register_hooks([record])
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    resumed.train()
    assert record.iterations == [4, 5]
    assert (tmp_path / "model_final.pth").is_file()


def test_evaluation_with_tta_reads_images_as_the_plain_one_does(tmp_path):
    """Trainer.test_with_TTA loads the test images with the cell mapper (cell-diameter resize, frames cut
    from padded canvases): with one view it gives the plain evaluation's numbers."""
    from detectron2.data import DatasetCatalog

    name = "test_segpc_one_image_d320"
    if name not in DatasetCatalog.list():
        register_segpc(name, "datasets/segpc_mini/train", image_ids=["1997"], cell_diameter=320.0)
    cfg = small_cfg(tmp_path, max_iter=1)
    cfg.merge_from_list(["DATASETS.TEST", (name,), "INPUT.CELL_DIAMETER.TEST", 40.0,
                         "TEST.AUG.ENABLED", True, "TEST.AUG.FLIP", False, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    seed_all_rng(1)
    model = Trainer.build_model(cfg)
    plain = Trainer.test(cfg, model)  # one dataset: its results, unnamed
    augmented = Trainer.test_with_TTA(cfg, model)[f"{name}_TTA"]
    assert plain["segm"]["AP"] == pytest.approx(augmented["segm"]["AP"])
    assert plain["segpc"]["mIoU"] == pytest.approx(augmented["segpc"]["mIoU"])
    assert (tmp_path / "inference_TTA" / "evaluation.json").is_file()
