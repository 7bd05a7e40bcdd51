"""Each cell instance's nucleus as a second mask: the loss and outputs of the nucleus channel that the
project's mask heads add with ``MODEL.ROI_MASK_HEAD.NUCLEUS``.

SegPC-2021 annotates nucleus (40) and cytoplasm (20) of every cell; a nucleus *class* would be a
separate detection that must be paired with its cell afterwards, by overlap. Predicted as a channel of
the cell's own mask head, the nucleus is pooled from the same box, so it belongs to its cell by
construction. Targets are the ``gt_nuclei`` BitMasks the mapper puts beside ``gt_masks``
(:class:`~detectron2_myeloma.data.mapper.CellDatasetMapper`).
"""
from typing import List

import torch
import torch.nn.functional as F
from detectron2.layers import cat
from detectron2.structures import Instances

from ..structures import NUCLEUS_MASKS


def nucleus_mask_loss(logits: torch.Tensor, instances: List[Instances]) -> torch.Tensor:
    """Binary cross-entropy of (R, 1, M, M) nucleus logits of the foreground proposals against each
    proposal box's crop of its ground-truth cell's nucleus (empty for a cell without one).

    M is the mask head's output side. ``instances`` are the foreground proposals per image (R_i of the R, in
    order), with ``proposal_boxes`` and ``gt_nuclei`` (BitMasks), which is cropped to each box and resized to
    M x M. Returns a 0-dim float32 loss (with no foreground a zero, which may have the logits' dtype)."""
    side = logits.size(2)
    targets = [x.gt_nuclei.crop_and_resize(x.proposal_boxes.tensor, side).to(logits.device)
               for x in instances if len(x)]
    if not targets:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits[:, 0], cat(targets).to(torch.float32), reduction="mean")


def nucleus_inference(logits: torch.Tensor, instances: List[Instances]) -> None:
    """Sets ``pred_nucleus_masks`` of each image's detections: (R, 1, M, M) logits of all R detections, in
    image order -> (R_i, 1, M, M) probabilities per image, in the logits' dtype."""
    probs = logits.sigmoid().split([len(x) for x in instances])
    for prob, x in zip(probs, instances):
        x.set(NUCLEUS_MASKS, prob)
