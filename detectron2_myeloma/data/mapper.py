"""Training/test augmentations for cells, as a Detectron2 ``DatasetMapper``."""
from typing import List

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T

from .transforms import RandomColorJitter, RandomRot90, build_color_jitter


def build_cell_augmentations(cfg: CfgNode, is_train: bool) -> List[T.Augmentation]:
    """Resize to the cell-appropriate scale, then (training) crop, flip, rotate and colour-jitter."""
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs: List[T.Augmentation] = [T.ResizeShortestEdge(
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    aug = cfg.INPUT.CELL_AUG
    if aug.HFLIP:
        augs.append(T.RandomFlip(horizontal=True, vertical=False))
    if aug.VFLIP:
        augs.append(T.RandomFlip(horizontal=False, vertical=True))
    if aug.ROT90:
        augs.append(RandomRot90())
    jitter = build_color_jitter(aug, "INPUT.CELL_AUG")
    if jitter is not None:
        augs.append(RandomColorJitter(jitter, cfg.INPUT.FORMAT))
    return augs


def build_cell_mapper(cfg: CfgNode, is_train: bool) -> DatasetMapper:
    """Detectron2's mapper with the cell augmentations; masks stay bitmasks (RLE in, no polygons)."""
    return DatasetMapper(
        is_train=is_train,
        augmentations=build_cell_augmentations(cfg, is_train),
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=cfg.MODEL.MASK_ON,
        instance_mask_format=cfg.INPUT.MASK_FORMAT,
        recompute_boxes=cfg.MODEL.MASK_ON and cfg.INPUT.CROP.ENABLED,
    )
