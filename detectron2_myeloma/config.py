"""Every config key this project adds to Detectron2's defaults, each with a one-line comment."""
import os
from typing import Any, Dict, List, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .classifier.config import add_cell_classifier_config
from .data.transforms import STAIN_HUE_SHIFT
from .model_zoo import SHIPPED_MODELS, resolve_weights
from .utils.config_merge import merge_config
from .utils.errors import InputError


def add_myeloma_config(cfg: CN) -> None:
    """Add the project's keys to a Detectron2 config (call before merging a project YAML): the detector's,
    then each plugin's own (:func:`~detectron2_myeloma.classifier.config.add_cell_classifier_config`)."""
    _C = cfg
    # MODEL.DEVICE keeps Detectron2's default, "cuda"; the tools run on the CPU where CUDA is absent.
    _C.MODEL.CHANNELS_LAST = False  # model weights and inputs in channels-last format (faster convolutions)
    # Post-hooks run on inference results, in order: names in modeling/post_hooks.POST_HOOK_REGISTRY.
    _C.MODEL.POST_HOOKS = []  # e.g. ["CellClassifierHook"] labels each cell myeloma or not
    # Mixed precision, None ("auto"): where the device runs it natively; True: always; False: never.
    # What runs in which dtype: detectron2_myeloma/modeling/precision.py.
    _C.SOLVER.AMP.ENABLED = None  # training: bf16 autocast on a CPU with AVX512-BF16/AMX, AMPTrainer on CUDA
    # Train only the parameters whose names start with one of these (e.g. ["roi_heads.mask_head."]: a new
    # mask head on a trained detector, which then keeps its boxes); the rest is frozen. []: train everything.
    _C.SOLVER.TRAINABLE_PREFIXES = []
    _C.TEST.AMP = CN()
    _C.TEST.AMP.ENABLED = None  # inference, CPU: body, RoI heads, classifier float32; FPN/PANet/RPN autocast
    # Sliced inference of images larger than a camera frame (slide regions; engine/tiling.py), for models
    # at one cell scale (INPUT.CELL_DIAMETER.TEST); a model resizing by MIN_SIZE_TEST predicts images whole.
    _C.TEST.TILES = CN()
    # Tile side in model pixels; an image that fits is predicted whole (704: a full-size frame of either
    # SegPC microscope, 641 px at 80 px cells, with 10% to spare)
    _C.TEST.TILES.SIZE = 704
    _C.TEST.TILES.OVERLAP = 2.0  # overlap of neighbouring tiles in median cell diameters (> 1: a cell fits)
    _C.TEST.TILES.MAX_COUNT = 5000  # an image needing more tiles is refused (a cell diameter far too small)
    # On CUDA, the mask head's detections per image are padded up to the next of these counts (copies of
    # the first, dropped after): every new batch shape costs seconds of cuDNN kernel selection, and the
    # number of cells changes from image to image. Beyond the largest, unpadded; () or the CPU: never.
    _C.TEST.DETECTION_BUCKETS = (8, 16, 32, 64, 128)
    # Images (frames of one size, or the tiles of a large image) per forward at test, and TTA views of one
    # shape: a GPU is filled by batches, a CPU gains nothing from them. 0: 4 on CUDA, 1 on the CPU.
    _C.TEST.IMS_PER_BATCH = 0
    _C.TEST.FRAGMENT_MAX_INSIDE = 0.75  # drop a detection this much inside a larger, better-scored one (0: off)
    # Test-time augmentation (engine/tta.py; Detectron2's TEST.AUG.ENABLED switches it, TEST.AUG.FLIP the
    # horizontal flip): boxes of every view merged by NMS, then each cell's mask averaged over the views.
    # Detectron2's TEST.AUG.MIN_SIZES / MAX_SIZE are for shortest-edge models; cell-scale models use:
    _C.TEST.AUG.VFLIP = False  # also the vertical flip (with FLIP and ROT90: the 8 symmetries of a square)
    _C.TEST.AUG.ROT90 = False  # also the 90-degree rotation (of each flipped view)
    _C.TEST.AUG.CELL_DIAMETER_FACTORS = (1.0,)  # INPUT.CELL_DIAMETER.TEST times each factor

    # timm bottom-up of BACKBONE.NAME "build_timm_rmask_fpn_backbone" (features named res2..res5).
    _C.MODEL.TIMM = CN()
    _C.MODEL.TIMM.NAME = "tf_efficientnet_lite2"  # timm model name (features_only)
    _C.MODEL.TIMM.OUT_INDICES = (1, 2, 3, 4)  # timm feature indices; must give strides 4, 8, 16, 32
    _C.MODEL.TIMM.PRETRAINED = True  # load ImageNet weights: WEIGHTS, else the packaged Lite0/Lite2 file
    _C.MODEL.TIMM.WEIGHTS = ""  # timm-format state dict (.pth/.bin/.safetensors), overrides the packaged one
    _C.MODEL.TIMM.FREEZE_AT = 2  # freeze everything up to the stride 2**FREEZE_AT feature (0: nothing)
    _C.MODEL.TIMM.NORM = "FrozenBN"  # "FrozenBN" (all BatchNorm frozen) or "BN" (trainable past FREEZE_AT)

    # R-Mask R-CNN additions to Mask R-CNN; all off = plain Mask R-CNN.
    _C.MODEL.RMASK = CN()
    _C.MODEL.RMASK.BOTTOM_UP_PATH = False  # PANet bottom-up path N2..N5 after the FPN
    _C.MODEL.RMASK.FPN_ATTENTION = "NONE"  # attention on P2..P5 (FPN-AM): NONE, CA, SA, CA-SA or SA-CA
    _C.MODEL.RMASK.BU_ATTENTION = "NONE"  # attention on N2..N5 (B-U-AM, needs BOTTOM_UP_PATH): same choices
    _C.MODEL.RMASK.ATTENTION_GATE = "sigmoid"  # "sigmoid" (2*sigmoid) or "softmax" (n*softmax, mean 1)
    _C.MODEL.RMASK.CA_REDUCTION = 16  # channel attention MLP reduction ratio
    _C.MODEL.RMASK.CA_USE_MAX_POOL = False  # channel attention also uses global max pooling (CBAM)
    _C.MODEL.RMASK.SA_KERNEL_SIZE = 7  # spatial attention conv kernel size (odd)
    # Adaptive mask pooling is a mask head that pools for itself: ROI_MASK_HEAD.NAME
    # "AdaptiveFusionMaskHead" with Detectron2's ROI_MASK_HEAD.POOLER_TYPE "" (no pooling before the head).
    _C.MODEL.RMASK.ADAPTIVE_FUSION = "max"  # its fusion of the levels: "max" or "sum"
    _C.MODEL.RMASK.ADAPTIVE_POOLER_TYPE = "ROIAlignV2"  # its own pooler's op, as ROI_MASK_HEAD.POOLER_TYPE
    _C.register_renamed_key("MODEL.RMASK.MASK_POOLING", "MODEL.ROI_MASK_HEAD.NAME",
                            'MASK_POOLING "adaptive" is ROI_MASK_HEAD.NAME "AdaptiveFusionMaskHead" with '
                            'ROI_MASK_HEAD.POOLER_TYPE ""')

    # Each cell instance's nucleus as a second mask (heads AdaptiveFusionMaskHead, PointRefinedMaskHead),
    # trained on the nuclei the dataset records carry (SegPC's value 40; "nucleus" in each cell annotation).
    _C.MODEL.ROI_MASK_HEAD.NUCLEUS = False  # True: instances get pred_nucleus_masks beside pred_masks
    # Boundary refinement of ROI_MASK_HEAD.NAME "PointRefinedMaskHead" (modeling/point_refinement.py): the
    # coarse 28x28 mask is upsampled 2x per step and re-predicted at its most uncertain points from fine
    # features there (PointRend's subdivision, Kirillov et al. 2020).
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE = CN()
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.IN_FEATURES = ("p2",)  # feature maps sampled at each point
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.IMAGE = True  # also the model input's own pixels at each point
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.FC_DIM = 128  # width of the point MLP (1x1 convolutions)
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.NUM_FC = 3  # its hidden layers, each also fed the coarse logits
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.TRAIN_NUM_POINTS = 196  # points per training RoI
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.OVERSAMPLE_RATIO = 3.0  # candidates drawn per point kept
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.IMPORTANCE_SAMPLE_RATIO = 0.75  # kept by uncertainty (rest uniform)
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.SUBDIVISION_STEPS = 2  # inference: 28 -> 56 -> 112 (0: coarse only)
    _C.MODEL.ROI_MASK_HEAD.POINT_REFINE.SUBDIVISION_NUM_POINTS = 784  # points re-predicted per step

    # One physical scale: images resized so that their median cell (the record's "cell_diameter", from
    # the dataset's metadata; at inference the frame size's default or --cell-diameter) spans this many
    # pixels, in place of the INPUT.MIN_SIZE_* shortest-edge resize.
    _C.INPUT.CELL_DIAMETER = CN()
    _C.INPUT.CELL_DIAMETER.TRAIN = ()  # target diameters (px), one drawn per training image; (): MIN_SIZE_TRAIN
    _C.INPUT.CELL_DIAMETER.TEST = 0.0  # target diameter (px) at test; 0: MIN_SIZE_TEST

    # Training augmentations for cells (after INPUT.MIN_SIZE_TRAIN resizing and INPUT.CROP).
    _C.INPUT.CELL_AUG = CN()
    _C.INPUT.CELL_AUG.HFLIP = True  # random horizontal flip
    _C.INPUT.CELL_AUG.VFLIP = True  # random vertical flip (cells have no up or down)
    _C.INPUT.CELL_AUG.ROT90 = True  # random rotation by a multiple of 90 degrees (exact, no interpolation)
    _C.INPUT.CELL_AUG.BRIGHTNESS = 0.1  # brightness factor drawn from [1 - x, 1 + x]; 0 = off
    _C.INPUT.CELL_AUG.CONTRAST = 0.1  # contrast factor drawn from [1 - x, 1 + x]; 0 = off
    _C.INPUT.CELL_AUG.SATURATION = 0.1  # saturation factor drawn from [1 - x, 1 + x]; 0 = off
    _C.INPUT.CELL_AUG.HUE = STAIN_HUE_SHIFT  # hue (stain) shift up to +-x of the hue circle, <= 0.5; 0 = off

    add_cell_classifier_config(_C)  # the cell-classifier plugin owns its keys


def load_config(config_file: str, opts: Sequence[Any] = ()) -> CN:
    """Detectron2's defaults, the project's keys, ``config_file`` and then ``opts`` (KEY VALUE pairs, as
    on a command line); not frozen. Short names of shipped models in ``MODEL.WEIGHTS`` and
    ``MODEL.CELL_CLASSIFIER.WEIGHTS`` become their files (:mod:`~detectron2_myeloma.model_zoo`).

    A bad file, key or value is an InputError (:func:`merge_config`), and so is a weights path that
    does not exist."""
    cfg = get_cfg()
    add_myeloma_config(cfg)
    merge_config(cfg, config_file, opts)
    cfg.MODEL.WEIGHTS = _checked_weights(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    cfg.MODEL.CELL_CLASSIFIER.WEIGHTS = _checked_weights(cfg.MODEL.CELL_CLASSIFIER.WEIGHTS,
                                                         "MODEL.CELL_CLASSIFIER.WEIGHTS")
    return cfg


# What a trained detector's predictions depend on besides its weights: a config that differs from the
# one a model was trained with on any of these keys runs it at another scale, or another architecture.
RESULT_KEYS = ("INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.FORMAT", "INPUT.CELL_DIAMETER.TEST",
               "MODEL.META_ARCHITECTURE", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "MODEL.MASK_ON",
               "MODEL.BACKBONE", "MODEL.TIMM", "MODEL.RESNETS", "MODEL.FPN", "MODEL.RMASK",
               "MODEL.ANCHOR_GENERATOR", "MODEL.RPN", "MODEL.ROI_HEADS.NAME", "MODEL.ROI_HEADS.NUM_CLASSES",
               "MODEL.ROI_BOX_HEAD", "MODEL.ROI_MASK_HEAD")


def result_differences(cfg: CN, reference: CN) -> List[str]:
    """``"KEY value (reference: value)"`` for every leaf under :data:`RESULT_KEYS` where ``cfg`` and
    ``reference`` differ."""
    def leaves(node: Any, key: str) -> Dict[str, Any]:
        if isinstance(node, CN):
            return {k: v for child in sorted(node) for k, v in leaves(node[child], f"{key}.{child}").items()}
        return {key: node}

    differences = []
    for key in RESULT_KEYS:
        node, reference_node = cfg, reference
        for part in key.split("."):
            node, reference_node = node[part], reference_node[part]
        mine, theirs = leaves(node, key), leaves(reference_node, key)
        differences += [f"{k} {mine[k]} (model: {theirs[k]})" for k in mine if mine[k] != theirs.get(k)]
    return differences


def _checked_weights(value: str, key: str) -> str:
    """The file of a shipped name, or ``value``; InputError for a path that does not exist (found
    here, before a model is built or a dataset read, not after)."""
    value = resolve_weights(value)
    if value and "://" not in value and not os.path.isfile(value):
        raise InputError(f"{key} {value}: no such file (a checkpoint path or a shipped model: "
                         f"{', '.join(SHIPPED_MODELS)})")
    return value
