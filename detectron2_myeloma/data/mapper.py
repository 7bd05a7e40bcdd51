"""Training/test augmentations for cells, as a Detectron2 ``DatasetMapper``; and the evaluation mapper,
which hands the predictor a record's original image, as the tools hand it an image file."""
import copy
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks

from .images import read_image, read_record_image, record_crop
from .masks import rle_to_mask
from .transforms import CellAugInput, RandomColorJitter, RandomRot90, ResizeToCellDiameter, build_color_jitter


def cell_diameter_targets(cfg: CfgNode, is_train: bool) -> Tuple[float, ...]:
    """The ``INPUT.CELL_DIAMETER`` targets in force: () when images are resized by their shortest edge."""
    diameter = cfg.INPUT.CELL_DIAMETER
    return tuple(diameter.TRAIN) if is_train else ((diameter.TEST,) if diameter.TEST > 0 else ())


def build_cell_augmentations(cfg: CfgNode, is_train: bool) -> List[T.Augmentation]:
    """Resize to the cell-appropriate scale (unless the mapper resizes by cell diameter), then
    (training) crop, flip, rotate and colour-jitter."""
    by_diameter = bool(cell_diameter_targets(cfg, is_train))
    if not is_train:
        return [] if by_diameter else [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST,
                                                             "choice")]
    augs: List[T.Augmentation] = [] if by_diameter else [T.ResizeShortestEdge(
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


class CellDatasetMapper(DatasetMapper):
    """``DatasetMapper`` whose image is the part of the file its record describes (:func:`record_crop`:
    the frame inside a padded canvas), as Detectron2 asks of datasets not read whole from a file, and
    which, given ``cell_diameters``, first resizes every image so that its cells (the record's
    ``"cell_diameter"``, handed to the resize through :class:`CellAugInput`) span one of them. Instance
    annotations only (no semantic segmentation, no precomputed proposals).

    With ``nuclei``, the instances also hold ``gt_nuclei``: BitMasks of each annotation's ``"nucleus"``
    RLE (SegPC readers put one in every cell annotation), transformed as its mask; empty where an
    annotation has none. A record none of whose annotations has one is refused: a model would learn
    that cells have no nucleus."""

    def __init__(self, is_train: bool = True, *, cell_diameters: Sequence[float] = (), nuclei: bool = False,
                 **kwargs):
        super().__init__(is_train, **kwargs)
        self.cell_diameters = tuple(cell_diameters)
        self.nuclei = nuclei
        if self.cell_diameters:
            self.augmentations = T.AugmentationList([ResizeToCellDiameter(self.cell_diameters),
                                                     *self.augmentations.augs])

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """A copy of the record with ``"image"``, a (3, H, W) uint8 tensor in ``image_format`` (H x W
        after the augmentations) and, in training, ``"instances"`` of the R non-crowd annotations left
        with a non-empty box: ``gt_boxes`` (Boxes, (R, 4) float32 XYXY), ``gt_classes`` ((R,) int64),
        ``gt_masks`` (BitMasks, (R, H, W) bool) with ``use_instance_mask``, and ``gt_nuclei`` (likewise)
        with ``nuclei``. At test time the annotations are dropped."""
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        image = record_crop(image, dataset_dict)
        utils.check_image_size(dataset_dict, image)
        if self.cell_diameters and "cell_diameter" not in dataset_dict:
            raise ValueError(f"{dataset_dict['file_name']}: INPUT.CELL_DIAMETER resizes by cell size but "
                             "the record has no cell_diameter (register the dataset with one)")
        aug_input = CellAugInput(image, cell_diameter=dataset_dict.get("cell_diameter"))
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
        elif "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image.shape[:2])
        return dataset_dict

    def _transform_annotations(self, dataset_dict: Dict[str, Any], transforms: T.TransformList,
                               image_shape: Tuple[int, int]) -> None:
        """``DatasetMapper``'s, plus ``gt_nuclei`` with ``nuclei`` (filtered with the instances)."""
        if not self.nuclei:
            return super()._transform_annotations(dataset_dict, transforms, image_shape)
        annotations = [a for a in dataset_dict.pop("annotations") if not a.get("iscrowd", 0)]
        if annotations and not any("nucleus" in a for a in annotations):
            raise ValueError(f"{dataset_dict['file_name']}: MODEL.ROI_MASK_HEAD.NUCLEUS is on but no "
                             "annotation of this record has a nucleus (a SegPC dataset has them)")
        nuclei = [transforms.apply_segmentation(rle_to_mask(a["nucleus"]).astype(np.uint8)) > 0
                  if "nucleus" in a else np.zeros(image_shape, dtype=bool) for a in annotations]
        instances = utils.annotations_to_instances(
            [utils.transform_instance_annotations(a, transforms, image_shape) for a in annotations],
            image_shape, mask_format=self.instance_mask_format)
        instances.gt_nuclei = BitMasks(torch.as_tensor(np.stack(nuclei)) if nuclei
                                       else torch.zeros((0, *image_shape), dtype=torch.bool))
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        dataset_dict["instances"] = utils.filter_empty_instances(instances)


def build_cell_mapper(cfg: CfgNode, is_train: bool) -> DatasetMapper:
    """The cell mapper with the cell augmentations; masks stay bitmasks (RLE in, no polygons)."""
    return CellDatasetMapper(
        is_train=is_train,
        cell_diameters=cell_diameter_targets(cfg, is_train),
        augmentations=build_cell_augmentations(cfg, is_train),
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=cfg.MODEL.MASK_ON,
        nuclei=cfg.MODEL.MASK_ON and cfg.MODEL.ROI_MASK_HEAD.NUCLEUS,
        instance_mask_format=cfg.INPUT.MASK_FORMAT,
        recompute_boxes=cfg.MODEL.MASK_ON and cfg.INPUT.CROP.ENABLED,
    )


def original_image_mapper(dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
    """The evaluation loader's mapper: the record without its annotations (the evaluators read them from
    the catalog) and its ``"image"``, HxWx3 uint8 BGR at the file's own resolution: the engine's
    predictor resizes it as the tools resize an image file (:mod:`~detectron2_myeloma.engine.inference`)."""
    record = {key: value for key, value in dataset_dict.items() if key != "annotations"}
    record["image"] = read_record_image(dataset_dict)
    utils.check_image_size(record, record["image"])
    return record
