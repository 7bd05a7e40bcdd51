"""Config of the cell classifier (myeloma vs other cells), a yacs ``CfgNode`` of its own.

The classifier is not a Detectron2 meta-architecture, so it does not share Detectron2's defaults
(nor their VERSION check): it is an fvcore ``CfgNode``, the base of Detectron2's, whose YAMLs
(configs/Classifier/) inherit with ``_BASE_`` the same way.
"""
from typing import Any, Sequence

from fvcore.common.config import CfgNode as CN

from ..data.transforms import STAIN_HUE_SHIFT
from ..utils.config_merge import merge_config


def add_cell_classifier_config(cfg: CN) -> None:
    """Add the keys of the cell-classifier post-hook to a detector's config (as PointRend's
    ``add_pointrend_config`` adds its head's); :func:`~detectron2_myeloma.config.add_myeloma_config`
    calls it."""
    _C = cfg
    # Cell classifier post-hook ("CellClassifierHook" in MODEL.POST_HOOKS): labels each cell detection
    # myeloma (probability above the checkpoint's TEST.THRESHOLD) or not, from a square crop of the
    # full-resolution image. Detections of other classes (nuclei) get label -1 and probability NaN and
    # are always kept (a submission pairs nuclei with the cells that remain).
    _C.MODEL.CELL_CLASSIFIER = type(cfg)()  # a node of the config's own class (Detectron2's)
    _C.register_renamed_key("MODEL.CELL_CLASSIFIER.ENABLED", "MODEL.POST_HOOKS",
                            'ENABLED True is MODEL.POST_HOOKS "[\'CellClassifierHook\']"')
    _C.MODEL.CELL_CLASSIFIER.WEIGHTS = ""  # checkpoint written by tools/train_classifier.py (model_best.pth)
    _C.MODEL.CELL_CLASSIFIER.CELL_CLASS = 0  # class index of cells: "cell", or a one-class model's class
    _C.MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA = True  # True: keep and label them; False: drop them
    _C.MODEL.CELL_CLASSIFIER.BATCH_SIZE = 32  # crops per classifier forward pass


def get_classifier_cfg() -> CN:
    """A fresh copy of the classifier defaults, every key commented."""
    _C = CN()
    _C.MODEL = CN()
    _C.MODEL.NAME = "tf_efficientnet_lite2"  # timm model name (an EfficientNet-like: conv_stem, blocks, head)
    # "" = the packaged ImageNet weights for tf_efficientnet_lite0/lite2 (paired by order, offline);
    # otherwise a timm-format state dict file. Other models with "" start from random init (warned).
    _C.MODEL.WEIGHTS = ""
    _C.MODEL.DROPOUT = 0.2  # dropout before the final linear layer (timm drop_rate)
    _C.MODEL.FREEZE_AT = 0  # 0: train everything; k > 0: freeze the stem and the first k block stages
    # Input normalisation (x - mean) / std on 0..255 RGB: 127.5 / 127.5 is what the Lite weights expect.
    _C.MODEL.PIXEL_MEAN = [127.5, 127.5, 127.5]
    _C.MODEL.PIXEL_STD = [127.5, 127.5, 127.5]

    _C.INPUT = CN()
    # Crop side in pixels; must equal the crop folder's size (crops are resized once, when built).
    # 128 keeps a 450 px SegPC cell square (median cell + 15% margin) at ~3.5x reduction, where
    # nuclei stay ~60 px across with visible chromatin, at a quarter of Lite2's 260 px cost on CPU.
    _C.INPUT.SIZE = 128
    _C.INPUT.CROP_MARGIN = 0.15  # relative margin of the square crop; must equal the crop folder's
    # Crop side in median cell diameters of the image (the record's "cell_diameter"; at inference the
    # frame's or --cell-diameter): one physical scale for every source, cell size kept. 0: the side
    # follows each box (CROP_MARGIN). Must equal the crop folder's.
    _C.INPUT.CROP_DIAMETERS = 0.0

    # Training augmentation, per crop (all exact on square crops but the colour jitter); the jitter
    # keys mean what the detector's INPUT.CELL_AUG ones mean (data/transforms.build_color_jitter).
    _C.AUG = CN()
    _C.AUG.HFLIP = True  # random horizontal flip
    _C.AUG.VFLIP = True  # random vertical flip (cells have no up or down)
    _C.AUG.ROT90 = True  # random rotation by a multiple of 90 degrees
    _C.AUG.BRIGHTNESS = 0.1  # brightness factor drawn from [1 - x, 1 + x]; 0 = off
    _C.AUG.CONTRAST = 0.1  # contrast factor drawn from [1 - x, 1 + x]; 0 = off
    _C.AUG.SATURATION = 0.1  # saturation factor drawn from [1 - x, 1 + x]; 0 = off
    _C.AUG.HUE = STAIN_HUE_SHIFT  # hue (stain) shift up to +-x of the hue circle, <= 0.5; 0 = off

    _C.SOLVER = CN()
    _C.SOLVER.BASE_LR = 2e-4  # Adam learning rate (EfficientNet-B3 myeloma paper)
    _C.SOLVER.WEIGHT_DECAY = 0.0  # Adam (L2) weight decay
    _C.SOLVER.BATCH_SIZE = 32  # crops per step (paper)
    _C.SOLVER.EPOCHS = 30  # passes over the training crops (paper)
    _C.SOLVER.MAX_STEPS = 0  # stop after this many steps in total even mid-epoch; 0 = no limit
    # Class imbalance: "loss" (cross-entropy weighted by n / (2 n_class)), "sampler" (class-balanced
    # sampling with replacement) or "none".
    _C.SOLVER.CLASS_BALANCE = "loss"

    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 2  # crop-loading worker processes; 0 = in the main process

    _C.TEST = CN()
    _C.TEST.BATCH_SIZE = 64  # crops per evaluation step
    _C.TEST.THRESHOLD = 0.5  # myeloma probability above which a crop is called myeloma

    _C.SEED = 0  # seeds torch, numpy and random (head init, shuffling, augmentation)
    _C.DEVICE = "auto"  # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1"...
    _C.OUTPUT_DIR = "./output/classifier"  # checkpoints, metrics and plots
    return _C.clone()


def load_classifier_config(config_file: str, opts: Sequence[Any] = ()) -> CN:
    """The defaults, ``config_file`` and ``opts`` (KEY VALUE pairs); bad input is an InputError."""
    return merge_config(get_classifier_cfg(), config_file, opts)
