"""Test-time augmentation for cell detectors: every view of the image detects, the boxes of all views are
merged, and each merged cell's mask (and nucleus) is the mean of its masks in every view.

Detectron2's ``GeneralizedRCNNWithTTA`` does the same for shortest-edge models with horizontal flips;
cells have no up, down or handedness and these models work at one cell scale, so the views here are the
8 symmetries of the square (``TEST.AUG.FLIP``, ``VFLIP``, ``ROT90``: exact, no interpolation) at
``TEST.AUG.CELL_DIAMETER_FACTORS`` times the model's cell scale. The backbone runs once per view; boxes
are merged by Detectron2's class-wise NMS (as its TTA does); the mask head then runs on the merged
boxes in every view and the per-box mask grids, turned back into the image's orientation, are
averaged. Post-processing (masks as crops, rescaling) and the post-hooks run once, on the merged
cells, exactly as without augmentation.
"""
import contextlib
import itertools
from typing import Any, Dict, Iterator, List, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances
from torch import nn

from ..data.transforms import Rot90Transform
from ..modeling.meta_arch import GeneralizedRCNNWithPostHooks
from ..structures import NUCLEUS_MASKS
from ..utils.device import batches, images_per_batch


# Config overrides for the 8 symmetries of the square at the model's own scale: make_submission.py's default
# (docs/RESULTS.md, "Outlines and nuclei": what they gain and cost).
SYMMETRY_VIEWS = ["TEST.AUG.ENABLED", True, "TEST.AUG.FLIP", True, "TEST.AUG.VFLIP", True, "TEST.AUG.ROT90", True]


def view_transforms(height: int, width: int, hflip: bool, vflip: bool, rot90: bool,
                    factors: Sequence[float]) -> List[T.TransformList]:
    """The transforms of every view of an image of ``height`` x ``width``: each scale factor, then each
    combination of the switched-on symmetries (the identity first)."""
    views = []
    for factor in factors:
        if factor <= 0:
            raise ValueError(f"TEST.AUG.CELL_DIAMETER_FACTORS must be positive, got {factor}")
        h, w = max(1, round(height * factor)), max(1, round(width * factor))
        scale = [] if (h, w) == (height, width) else [T.ResizeTransform(height, width, h, w)]
        for flip_h, flip_v, turn in itertools.product((False, True) if hflip else (False,),
                                                      (False, True) if vflip else (False,),
                                                      (False, True) if rot90 else (False,)):
            ops: List[T.Transform] = list(scale)
            if flip_h:
                ops.append(T.HFlipTransform(w))
            if flip_v:
                ops.append(T.VFlipTransform(h))
            if turn:
                ops.append(Rot90Transform(h, w, 1))
            views.append(T.TransformList(ops))
    return views


def unview_grids(grids: torch.Tensor, transform: T.TransformList) -> torch.Tensor:
    """(N, C, M, M) mask grids of boxes in a view -> the grids of the same boxes in the image: the view's
    flips and turns undone on the grid (a scale changes the box, not its grid). Shape, dtype and device
    are kept; here the grids are the mask head's (N, 1, M, M) float32 probabilities, M its grid side."""
    for op in reversed(transform.transforms):
        if isinstance(op, T.HFlipTransform):
            grids = grids.flip(-1)
        elif isinstance(op, T.VFlipTransform):
            grids = grids.flip(-2)
        elif isinstance(op, Rot90Transform):
            grids = torch.rot90(grids, -op.k, dims=(-2, -1))
    return grids


def _apply_box(transform: T.Transform, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY ``boxes`` through ``transform`` (Detectron2 transforms take numpy), on their device."""
    return torch.as_tensor(transform.apply_box(boxes.cpu().numpy()), dtype=torch.float32, device=boxes.device)


@contextlib.contextmanager
def _masks_off(model: GeneralizedRCNNWithPostHooks) -> Iterator[None]:
    roi_heads = model.roi_heads
    mask_on = roi_heads.mask_on
    roi_heads.mask_on = False
    try:
        yield
    finally:
        roi_heads.mask_on = mask_on


class CellTTA(nn.Module):
    """A :class:`~detectron2_myeloma.modeling.meta_arch.GeneralizedRCNNWithPostHooks` that predicts every
    input from its views (see the module docstring); called like the model at inference, with the same
    inputs and outputs."""

    def __init__(self, model: GeneralizedRCNNWithPostHooks, cfg: CfgNode):
        super().__init__()
        self.model = model
        aug = cfg.TEST.AUG
        self.options = dict(hflip=aug.FLIP, vflip=aug.VFLIP, rot90=aug.ROT90,
                            factors=tuple(aug.CELL_DIAMETER_FACTORS))
        self.nms_threshold = cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST
        self.max_detections = cfg.TEST.DETECTIONS_PER_IMAGE
        self.num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        self.per_batch = images_per_batch(cfg.TEST.IMS_PER_BATCH, cfg.MODEL.DEVICE)

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The model's inference inputs (each ``"image"`` a (3, H, W) float32 tensor in INPUT.FORMAT, with
        ``"height"`` / ``"width"`` of the output) -> its outputs, ``{"instances": Instances}`` at the
        requested resolution, post-hooks run (:meth:`GeneralizedRCNNWithPostHooks.finish`)."""
        results = [self.merged_instances(inputs) for inputs in batched_inputs]
        return self.model.finish(results, batched_inputs)

    def merged_instances(self, inputs: Dict[str, Any]) -> Instances:
        """The raw (model-input scale) detections of one input, merged over its views: ``Instances`` of
        the (H, W) of ``inputs["image"]`` with ``pred_boxes`` ((N, 4) float32 XYXY), ``scores`` ((N,)
        float32), ``pred_classes`` ((N,) int64) and, with masks on, ``pred_masks`` (and the nuclei) as
        (N, 1, M, M) float32 probabilities averaged over the views."""
        image = inputs["image"]
        height, width = image.shape[-2:]
        views = [(transform, {**inputs, "image": self._view_image(image, transform)})
                 for transform in view_transforms(height, width, **self.options)]
        forwards = []  # (transforms, input batch, feature maps, detections) of views of one shape
        with _masks_off(self.model):
            for batch in batches(views, self.per_batch, key=lambda view: tuple(view[1]["image"].shape)):
                images, features, found = self.model.detect([view for _, view in batch])
                forwards.append(([transform for transform, _ in batch], images, features, found))
        transforms = [transform for forward in forwards for transform in forward[0]]
        detected = [found for forward in forwards for found in forward[3]]
        boxes = torch.cat([_apply_box(transform.inverse(), found.pred_boxes.tensor)
                           for transform, found in zip(transforms, detected)])
        scores = torch.zeros(len(boxes), self.num_classes + 1, device=boxes.device)
        classes = torch.cat([found.pred_classes for found in detected]).to(boxes.device)
        scores[torch.arange(len(boxes)), classes] = torch.cat([found.scores for found in detected]).to(boxes.device)
        merged, _ = fast_rcnn_inference_single_image(boxes, scores, (height, width), 1e-8, self.nms_threshold,
                                                     self.max_detections)
        if not self.model.roi_heads.mask_on:
            return merged
        cell, nucleus = [], []
        for batch_transforms, images, features, found in forwards:
            in_views = [Instances(view.image_size, pred_classes=merged.pred_classes, scores=merged.scores,
                                  pred_boxes=Boxes(_apply_box(transform, merged.pred_boxes.tensor)))
                        for transform, view in zip(batch_transforms, found)]
            for transform, masked in zip(batch_transforms, self.model.masks_for_boxes(images, features, in_views)):
                cell.append(unview_grids(masked.pred_masks, transform))
                if masked.has(NUCLEUS_MASKS):
                    nucleus.append(unview_grids(masked.get(NUCLEUS_MASKS), transform))
        merged.pred_masks = torch.stack(cell).mean(dim=0)
        if nucleus:
            merged.set(NUCLEUS_MASKS, torch.stack(nucleus).mean(dim=0))
        return merged

    @staticmethod
    def _view_image(image: torch.Tensor, transform: T.TransformList) -> torch.Tensor:
        array = image.permute(1, 2, 0).cpu().numpy().astype(np.float32)
        return torch.as_tensor(np.ascontiguousarray(transform.apply_image(array)).transpose(2, 0, 1))
