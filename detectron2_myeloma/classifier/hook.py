"""Post-hook of :class:`~detectron2_myeloma.modeling.meta_arch.GeneralizedRCNNWithPostHooks` that labels each
detected cell myeloma or not with the cell classifier (``MODEL.POST_HOOKS ["CellClassifierHook"]``,
configured by ``MODEL.CELL_CLASSIFIER``).

The classifier was trained on crops that ``tools/build_crops.py`` cut from full-resolution images, so the
hook cuts its crops from the full-resolution image too (never from the detector's resized input), with
the same function on the CPU: they are bit-identical to training crops, and only the small crops go to
the classifier's device. It is a plain callable holding the classifier, not a submodule: detector
checkpoints neither contain nor overwrite the classifier's weights.
"""
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.structures import Instances

from ..data.images import read_record_image
from ..modeling.post_hooks import POST_HOOK_REGISTRY, PostHookInfo
from ..modeling.precision import autocast, body_precision, inference_precision
from ..utils.errors import InputError
from .crops import crop_and_resize, crop_side
from .labels import NOT_CLASSIFIED
from .model import CellClassifier, load_classifier


def original_rgb_image(inputs: Dict[str, Any], input_format: str) -> np.ndarray:
    """The full-resolution image of one model input as an HxWx3 uint8 RGB array: ``inputs["original_image"]``
    (3xHxW uint8 in ``input_format``), else the file ``inputs["file_name"]`` read as
    ``tools/build_crops.py`` reads it (OpenCV, BGR)."""
    if "original_image" in inputs:
        image = torch.as_tensor(inputs["original_image"])
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError(f'"original_image" must be a 3xHxW uint8 tensor in INPUT.FORMAT '
                             f"({input_format}), got {image.dtype} of shape {tuple(image.shape)}")
        image = image.permute(1, 2, 0).cpu().numpy()
    elif "file_name" in inputs:
        image, input_format = read_record_image(inputs), "BGR"  # the record's part of the file, as cropped
    else:
        raise ValueError("MODEL.CELL_CLASSIFIER needs the full-resolution image of each input: an "
                         '"original_image" entry (as detectron2_myeloma.engine.predictor.OriginalImagePredictor '
                         'gives) or a "file_name" to read it from')
    return np.ascontiguousarray(image[..., ::-1] if input_format == "BGR" else image)


@POST_HOOK_REGISTRY.register()
class CellClassifierHook(PostHookInfo):
    """Adds ``pred_cell_probs`` (float32 myeloma probability) and ``pred_cell_labels`` (int64: 1 myeloma,
    0 non-myeloma) to every result's ``Instances``; with ``keep_non_myeloma=False``, drops the cells
    labelled 0.

    Only detections of ``cell_class`` are classified. The others (nuclei of a cell + nucleus model) are
    labelled :data:`~.labels.NOT_CLASSIFIED` with probability NaN and always kept: a nucleus is no cell to
    call myeloma, and the submission writer pairs nuclei with the cells that remain, ignoring the rest.

    On CUDA the crops go to the classifier in batches of exactly ``batch_size`` (the last one padded),
    prepared once when the hook is made: one shape, whatever the number of cells per image. The
    classifier, an EfficientNet like the detector's body, runs in the body's precision
    (:mod:`~detectron2_myeloma.modeling.precision`, ``inference_dtype`` from TEST.AMP.ENABLED): float32
    on the CPU, the autocast dtype on CUDA.
    """

    adds_fields = ("pred_cell_probs", "pred_cell_labels")

    @classmethod
    def changes_detections(cls, cfg: CfgNode) -> bool:
        return not cfg.MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA  # it drops the non-myeloma cells

    @classmethod
    def describe(cls, cfg: CfgNode) -> str:
        return f"cell classifier {cfg.MODEL.CELL_CLASSIFIER.WEIGHTS}"

    @classmethod
    def check_classes(cls, cfg: CfgNode, cell_class: int) -> None:
        if cfg.MODEL.CELL_CLASSIFIER.CELL_CLASS != cell_class:
            raise ValueError(f"MODEL.CELL_CLASSIFIER.CELL_CLASS is {cfg.MODEL.CELL_CLASSIFIER.CELL_CLASS} but the "
                             f"cell class of the class names is {cell_class}")

    @configurable
    def __init__(self, *, classifier: CellClassifier, cell_class: int = 0, batch_size: int = 32,
                 keep_non_myeloma: bool = True, input_format: str = "RGB",
                 inference_dtype: Optional[torch.dtype] = None):
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"MODEL.CELL_CLASSIFIER needs INPUT.FORMAT RGB or BGR, got {input_format!r}")
        self.classifier = classifier.eval()
        self.cell_class = cell_class
        self.batch_size = batch_size
        self.keep_non_myeloma = keep_non_myeloma
        self.input_format = input_format
        self.inference_dtype = inference_dtype
        if self.classifier.device.type == "cuda":  # crops go in fixed batches there: one shape to prepare
            self.classifier.warm_up(batch_size)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        config = cfg.MODEL.CELL_CLASSIFIER
        if not config.WEIGHTS:
            raise InputError("MODEL.POST_HOOKS has CellClassifierHook but MODEL.CELL_CLASSIFIER.WEIGHTS is "
                             "empty (the classifier would be untrained): give a checkpoint of "
                             "tools/train_classifier.py (model_best.pth) or segpc-cell-classifier")
        if not os.path.isfile(config.WEIGHTS):
            raise InputError(f"MODEL.CELL_CLASSIFIER.WEIGHTS {config.WEIGHTS}: no such file")
        return {
            "classifier": load_classifier(config.WEIGHTS, cfg.MODEL.DEVICE),
            "cell_class": config.CELL_CLASS,
            "batch_size": config.BATCH_SIZE,
            "keep_non_myeloma": config.KEEP_NON_MYELOMA,
            "input_format": cfg.INPUT.FORMAT,
            "inference_dtype": inference_precision(cfg).dtype,
        }

    def __call__(self, batched_inputs: List[Dict[str, Any]], results: List[Dict[str, Any]]
                 ) -> List[Dict[str, Any]]:
        """The model's inputs and outputs, one per image -> the outputs with each ``"instances"`` passed
        through :meth:`classify`."""
        with torch.no_grad():
            return [{**result, "instances": self.classify(inputs, result["instances"])}
                    for inputs, result in zip(batched_inputs, results)]

    def classify(self, inputs: Dict[str, Any], instances: Instances) -> Instances:
        """``instances`` (in original image coordinates) of one input with the classifier's fields.

        Reads ``pred_classes`` ((N,) int64) and ``pred_boxes`` ((N, 4) float32 XYXY); sets
        ``pred_cell_probs`` ((N,) float32, NaN where not classified) and ``pred_cell_labels`` ((N,) int64),
        on ``pred_classes``' device. Without ``keep_non_myeloma``, the cells labelled 0 are dropped."""
        device = instances.pred_classes.device
        is_cell = instances.pred_classes == self.cell_class
        probs = torch.full((len(instances),), math.nan, device=device)
        labels = torch.full((len(instances),), NOT_CLASSIFIED, dtype=torch.int64, device=device)
        if is_cell.any():
            cell_probs = self.cell_probs(inputs, instances.pred_boxes.tensor[is_cell], instances.image_size)
            probs[is_cell] = cell_probs
            labels[is_cell] = (probs[is_cell] > self.classifier.threshold).long()
        instances.pred_cell_probs = probs
        instances.pred_cell_labels = labels
        return instances if self.keep_non_myeloma else instances[labels != 0]

    def cell_probs(self, inputs: Dict[str, Any], boxes: torch.Tensor, image_size: Tuple[int, int]
                   ) -> torch.Tensor:
        """(N,) float32 myeloma probabilities of the (N, 4) float32 XYXY ``boxes`` (original image pixels,
        of an image of ``image_size`` (H, W)), on the boxes' device: the classifier moves there first."""
        if self.classifier.device != boxes.device:  # follows the detector, e.g. after model.to(device)
            self.classifier.to(boxes.device)
        device = self.classifier.device
        with autocast(device.type, self.inference_dtype), body_precision(device):
            probs = self.classifier.classify(self.cell_crops(inputs, boxes, image_size), self.batch_size,
                                             fixed_batch=device.type == "cuda")
        return probs.float()

    def cell_crops(self, inputs: Dict[str, Any], boxes: torch.Tensor, image_size: Tuple[int, int]
                   ) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops of the (N, 4) XYXY ``boxes``, S the classifier's ``input_size``,
        cut on the CPU from the full-resolution image of ``inputs`` as the training crops were (their
        channels in RGB order); a classifier of physical-scale crops reads the image's median cell
        diameter from ``inputs["cell_diameter"]``."""
        image = original_rgb_image(inputs, self.input_format)
        if image.shape[:2] != tuple(image_size):
            raise ValueError(f"the full-resolution image is {image.shape[:2]} but the detections are "
                             f'in a {tuple(image_size)} frame (the input\'s "height" and "width")')
        size, margin = self.classifier.input_size, self.classifier.crop_margin
        side = crop_side(self.classifier.crop_diameters, inputs.get("cell_diameter"))
        crops = [crop_and_resize(image, box, margin, size, side=side) for box in boxes.tolist()]
        return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
